"""The API's request parsers: DRF's own, refusing with 400 what no field accepts (a NUL
character anywhere, JSON nested deeper than INTERORG_MAX_JSON_DEPTH) instead of letting the
database or the JSON decoder fail with a 500 (interorg_site/hostile_input.py says why)."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from interorg_site.hostile_input import (
    HostileInput,
    check_json,
    check_query_dict,
    check_strings,
    depth_message,
    max_json_depth,
)


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = max_json_depth()
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # Python's decoder gives up a few hundred levels down, long after the limit.
            raise ParseError(depth_message(limit)) from None
        try:
            check_json(data, limit)
        except HostileInput as refused:
            raise ParseError(str(refused)) from None
        return data


class FormParser(parsers.FormParser):
    """Forms sent with PUT or PATCH (a POSTed form is checked before it reaches the API)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        try:
            check_query_dict(data, "a form field")
        except HostileInput as refused:
            raise ParseError(str(refused)) from None
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        try:
            check_query_dict(parsed.data, "a form field")
            for name, files in parsed.files.lists():
                check_strings([name, *(upload.name for upload in files)], "a file's name")
        except HostileInput as refused:
            raise ParseError(str(refused)) from None
        return parsed

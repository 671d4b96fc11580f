def is_requestor_address(address):
    raise NotImplementedError


def handle_reply(message, document):
    raise NotImplementedError

def is_master_address(address):
    raise NotImplementedError


def handle_export(message, document):
    raise NotImplementedError

"""The one exception type that means "the user gave bad input"; the CLI prints it as one line."""


class UserError(Exception):
    """Bad input (a file, an option, a dataset): printed as one line, no traceback unless -v."""

"""The exceptions the CLI prints as one line: bad input, and a Ctrl-C with how to continue."""


class UserError(Exception):
    """Bad input (a file, an option, a dataset): printed as one line, no traceback unless -v."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying what to run to continue; the CLI prints it after "interrupted: "."""

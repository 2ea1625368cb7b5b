"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UserError(ValueError):
    """Bad input from the user (a file, an option, a parameter).

    The message names the problem and the fix in one line. It subclasses ValueError so that library users
    can catch it the usual way.
    """

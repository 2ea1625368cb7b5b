"""The one exception type the CLI turns into a one-line message and exit code 2, and a helper for such lines."""


class UserError(ValueError):
    """Bad input from the user (a file, an option, a parameter).

    The message names the problem and the fix in one line. It subclasses ValueError so that library users
    can catch it the usual way.
    """


def one_line(text: object, limit: int = 200) -> str:
    """``text`` fit for a one-line message: control characters become spaces, long text is cut."""
    cleaned = "".join(c if c.isprintable() else " " for c in str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."

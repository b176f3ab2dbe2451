"""The one exception type the engine reports to users: what went wrong, where, and what to do."""


class JokrError(Exception):
    """A failure the user can act on. `code` is one of the event schema's error codes."""

    def __init__(self, message: str, hint: str = "", code: str = "bad_input"):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

"""Exception types raised for every user-facing PKI problem."""


class PKIError(ValueError):
    """A problem the user can fix; the message is one plain sentence."""


class ChownRequired(PKIError):
    """Files were fully written, but giving keys to their owners needs root."""

    def __init__(self, commands: list[str]):
        self.commands = commands
        super().__init__(
            "The files were written but only root can give keys to another user; run: " + " && ".join(commands)
        )

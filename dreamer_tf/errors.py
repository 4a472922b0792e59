"""Errors a user can cause: reported as one line, without a traceback."""


class UserError(Exception):
  """A problem with the user's input; the message names the problem and the fix."""


class MissingDependencyError(UserError):
  """An optional package is not installed."""

  def __init__(self, package: str, purpose: str, extra: str | None = None):
    hint = f"pip install -c constraints.txt -e '.[{extra}]'" if extra else f"pip install {package}"
    super().__init__(f"{purpose} needs the optional package '{package}', which is not installed: {hint}")

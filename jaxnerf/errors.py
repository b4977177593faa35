"""Errors caused by the user's input, reported by train.py and eval.py as one line and exit code 2."""


class UserError(Exception):
  """A mistake in the user's data, config or workdir; the message names the file or field and what was expected."""


class DataError(UserError, ValueError):
  """A problem with a scene's files."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work."""


class WorkdirError(UserError):
  """A workdir that cannot be used: unwritable, holding an incompatible run, or holding no checkpoint."""


class TrainingDivergedError(RuntimeError):
  """Too many training steps in a row had a non-finite loss or gradient."""


class DistributedError(UserError):
  """Multi-process settings that cannot work: missing or inconsistent coordinator address, count or id."""


class MissingExtraError(UserError):
  """An optional dependency (a setup.py extra) that a command needs is not installed."""

"""Files on local disk or in object storage: every file the project reads or writes goes through these functions,
which take local paths (used as they are) or URLs such as gs://bucket/run (read and written with etils.epath, which
uses gcsfs for gs://).

Object storage has no folders and no atomic rename (a rename is a copy), so a file meant to be seen complete or not
at all is written to a local temporary file first and then uploaded in one request (`partial_name`, `publish`): an
object appears only once its upload is complete.
"""
import contextlib
import importlib.util
import os
import posixpath
import tempfile
import uuid

from etils import epath

from jaxnerf.errors import UserError


def is_url(path):
  """Whether `path` names an object in storage (gs://bucket/key) rather than a local file."""
  return "://" in str(path)


def join(base, *parts):
  """`base` and relative `parts` joined with the separator of base's kind (a URL's is always /)."""
  return (posixpath.join if is_url(base) else os.path.join)(str(base), *parts)


def absolute(path):
  """A local path made absolute (against the current directory); a URL unchanged."""
  return str(path) if is_url(path) else os.path.abspath(path)


def _path(path):
  """etils' Path of a local path or URL; UserError for a gs:// URL without gcsfs installed."""
  if str(path).startswith("gs://") and importlib.util.find_spec("gcsfs") is None:
    raise UserError(f"{path}: reading and writing gs:// needs gcsfs (pip install -e '.[gcs]')")
  return epath.Path(path)


def _fresh(path):
  """_path(path), with what gcsfs knows of it and its folders forgotten: gcsfs keeps folder listings for the life
  of a process, and a process that watches a folder another one writes (the viewer, scripts/kill_test.py) must not
  answer from a stale listing."""
  p = _path(path)
  if is_url(path):
    epath.backend.fsspec_backend.fs(str(p)).invalidate_cache(str(p))
  return p


def exists(path):
  return _fresh(path).exists()


def isdir(path):
  """Whether `path` is a folder (for a URL: a prefix that some object's name continues with /)."""
  return _fresh(path).is_dir()


def isfile(path):
  return _fresh(path).is_file()


def listdir(path):
  """The names of the files and folders in folder `path`, sorted."""
  return sorted(child.name for child in _fresh(path).iterdir())


def makedirs(path):
  """Create a local folder and its parents if missing. Object storage needs none (an object's name holds its
  folders), and gcsfs would create a missing bucket, so nothing is done for a URL."""
  if not is_url(path):
    os.makedirs(path, exist_ok=True)


def open_file(path, mode="rb"):
  """A file object of `path` in `mode` ("r", "rb"; "w" and "wb" only for files that may be seen half-written)."""
  return _path(path).open(mode)


def remove(path):
  _path(path).unlink()


def check_writable(directory):
  """Create `directory` if needed and write and remove a file in it; OSError if that fails (a read-only folder,
  a missing bucket)."""
  makedirs(directory)
  if not is_url(directory):
    with tempfile.TemporaryFile(dir=directory):
      return
  probe = _path(join(directory, f".write_check_{uuid.uuid4().hex}"))
  probe.write_bytes(b"")
  probe.unlink()


def partial_name(path):
  """The local file to write `path` under before `publish`: beside it (same extension) for a local path, a new
  temporary file for a URL."""
  stem, extension = os.path.splitext(str(path))
  if not is_url(path):
    return f"{stem}.partial{extension}"
  handle, partial = tempfile.mkstemp(suffix=f".partial{extension}", prefix="jaxnerf_")
  os.close(handle)
  return partial


def publish(partial, path):
  """Make the complete local file `partial` (from partial_name) the file `path`: a rename on local disk, one upload
  of the whole content to a URL (the object appears when its upload is complete); `partial` is gone after."""
  if not is_url(path):
    os.replace(partial, path)
    return
  upload(partial, path)
  os.remove(partial)


def upload(local, url):
  """Store the local file `local` as the object `url`, replacing it whole: readers see the old or the new one."""
  with open(local, "rb") as f:
    content = f.read()
  # One call with the whole content: an upload that fails part way leaves no object.
  _path(url).write_bytes(content)


@contextlib.contextmanager
def local_folder(folder, names):
  """A local folder holding the files `names` of `folder`: `folder` itself when local, else a temporary copy
  (for libraries that read only local files, such as pycolmap); names missing from `folder` are skipped."""
  if not is_url(folder):
    yield folder
    return
  with tempfile.TemporaryDirectory(prefix="jaxnerf_") as copy:
    for name in names:
      source = _path(join(folder, name))
      if source.is_file():
        with open(os.path.join(copy, name), "wb") as f:
          f.write(source.read_bytes())
    yield copy

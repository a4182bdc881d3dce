"""Uploaded model files: streamed into the job's own directory, size-limited, and let
through only in formats that load without running code.

- The body is parsed as it arrives (python-multipart's streaming parser), the file part
  written straight to `JOB/upload/NAME`: no temporary file elsewhere, never more than
  the limit on disk, and a body that ends before its closing boundary is a truncated
  upload, refused.
- The file's name must be a plain name (letters, digits, `_`, `.`, `-`): a path
  (`../../x.onnx`) is refused, not cleaned, so nothing is ever written outside the
  job's directory.
- Formats: `.onnx` (a protobuf; then checked with onnx.checker in a child process,
  external data refused) and `.keras` (a zip with config.json, whose layers are all
  Keras' own: no Lambda, no custom object; the worker then loads it with safe_mode).
  A pickle (`.pt`, `.pth`, `.pkl`, `.joblib`, a zip of pickles) or a legacy `.h5` file
  needs code to load and is refused with 415, whatever it is named.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from onnxport.artifact.names import NAME

from .problems import ApiError, too_large

FIELD_LIMIT = 64 * 1024  # the non-file parts of the form (the request JSON)
ACCEPTED = (".onnx", ".keras")
REFUSED = {
    ".pt": "a PyTorch pickle: torch.load would run code from it",
    ".pth": "a PyTorch pickle: torch.load would run code from it",
    ".bin": "a pickle or raw tensors: it cannot be loaded without code",
    ".pkl": "a Python pickle: loading it runs code from it",
    ".pickle": "a Python pickle: loading it runs code from it",
    ".joblib": "a joblib pickle: loading it runs code from it",
    ".pt2": "a torch.export archive, which holds pickled parts",
    ".h5": "a legacy HDF5 Keras file: Lambda layers in it carry marshalled code",
    ".hdf5": "a legacy HDF5 Keras file: Lambda layers in it carry marshalled code",
    ".tflite": "not a source onnxport converts",
}


@dataclass
class Upload:
    path: Path
    size: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """The callbacks of the multipart parser: headers, the file part to disk, the other
    parts to memory."""

    def __init__(self, directory: Path, limit: int):
        self.directory = directory
        self.limit = limit
        self.headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self.part: str | None = None
        self.filename: str | None = None
        self.handle = None
        self.path: Path | None = None
        self.size = 0
        self.digest = hashlib.sha256()
        self.fields: dict[str, bytearray] = {}
        self.ended = False
        self.files = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished,
                "on_part_data": self.part_data, "on_part_end": self.part_end,
                "on_end": self.end}

    def part_begin(self) -> None:
        self.headers, self.part, self.filename = {}, None, None

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        self.headers[self._field.decode("latin-1").lower()] = \
            self._value.decode("utf-8", "replace")
        self._field, self._value = b"", b""

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        kind, options = parse_options_header(self.headers.get("content-disposition", ""))
        if kind != b"form-data" or b"name" not in options:
            raise ApiError(400, "bad_upload", "a part of the form has no "
                           "Content-Disposition: form-data; name=...",
                           "send the file as -F file=@model.onnx")
        self.part = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if self.part != "file":
                raise ApiError(400, "bad_upload", f"the form part {self.part!r} is a "
                               "file; only the part named 'file' may be",
                               "send -F file=@model.onnx")
            self.files += 1
            if self.files > 1:
                raise ApiError(400, "bad_upload", "the form holds more than one file",
                               "send one model file per upload")
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.path = self.directory / checked_filename(self.filename)
            self.directory.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.path, "xb")
        elif self.part not in ("request",):
            raise ApiError(400, "bad_upload", f"unknown form part {self.part!r}",
                           "the form has 'file' and, optionally, 'request' (JSON)")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.handle is not None:
            self.size += len(chunk)
            if self.size > self.limit:
                raise too_large("uploaded file", self.limit)
            self.digest.update(chunk)
            self.handle.write(chunk)
        else:
            value = self.fields.setdefault(self.part, bytearray())
            value += chunk
            if len(value) > FIELD_LIMIT:
                raise too_large(f"form field {self.part!r}", FIELD_LIMIT)

    def part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def checked_filename(filename: str) -> str:
    """The uploaded file's name if it is a plain name with an accepted suffix; a path
    (`../../x.onnx`, `a/b.onnx`, `C:\\x.onnx`) is refused, never cleaned up."""
    if not NAME.match(filename or "") or ".." in filename:
        raise ApiError(400, "bad_filename", f"the file name {filename!r} is not a plain "
                       "name", "name the file with letters, digits, '_', '.' and '-' "
                       "only, e.g. model.onnx (no directories, no '..')")
    suffix = Path(filename).suffix.lower()
    if suffix in REFUSED:
        raise ApiError(415, "unsupported_format", f"{filename} is {REFUSED[suffix]}",
                       "upload .onnx, or .keras saved by Keras 3 without Lambda layers "
                       "or custom objects; convert other formats where you trust them "
                       "(onnxport convert --trust-code)")
    if suffix not in ACCEPTED:
        raise ApiError(415, "unsupported_format", f"{filename}: the service accepts "
                       f"{', '.join(ACCEPTED)} uploads", "those load without running code")
    return filename


async def receive(request, directory: Path, limit: int) -> Upload:
    """Stream a multipart/form-data upload into `directory`."""
    from python_multipart.multipart import MultipartParser, parse_options_header
    from starlette.requests import ClientDisconnect

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "unsupported_media_type", "an upload is multipart/form-data",
                       "curl -F file=@model.onnx -F 'request={\"targets\":[\"cpu\"]}' ...")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and \
            int(declared) > limit + FIELD_LIMIT + 16384:
        raise too_large("upload", limit)
    receiver = _Receiver(directory, limit)
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise ApiError(400, "truncated_upload", "the client went away during the upload")
    except ApiError:
        raise
    except Exception as exc:  # python-multipart's parse errors
        raise ApiError(400, "bad_upload", f"the form cannot be parsed ({exc})",
                       "send multipart/form-data as curl -F does") from None
    finally:
        receiver.close()
    if not receiver.ended:
        raise ApiError(400, "truncated_upload", "the upload ended before the form's "
                       "closing boundary: it was cut short",
                       "send the whole file again")
    if receiver.path is None:
        raise ApiError(400, "bad_upload", "the form has no part named 'file'",
                       "send the model as -F file=@model.onnx")
    if receiver.size == 0:
        raise ApiError(400, "bad_upload", f"{receiver.filename} is empty")
    fields = {k: v.decode("utf-8", "replace") for k, v in receiver.fields.items()}
    return Upload(receiver.path, receiver.size, receiver.digest.hexdigest(), fields)


def discard(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


# --------------------------------------------------------------------------- formats


def check_format(path: Path, limit: int) -> str:
    """"onnx" or "keras" once the file is what its name says and loads without code;
    else an ApiError 415 with the reason."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    suffix = path.suffix.lower()
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise _refused(path, "is a Python pickle (it starts with the pickle opcode "
                             "PROTO): loading it would run code from it")
    if head[:4] == b"PK\x03\x04":
        return _check_zip(path, suffix, limit)
    if suffix == ".keras":
        raise _refused(path, "is not a Keras 3 file (a .keras file is a zip archive)")
    if head[:1] != b"\x08":  # ModelProto starts with ir_version (field 1, varint)
        raise _refused(path, "is not an ONNX model (an ONNX file is a protobuf "
                             "ModelProto that starts with its ir_version)")
    _check_onnx(path)
    return "onnx"


def _check_zip(path: Path, suffix: str, limit: int) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            names = [m.filename for m in members]
            pickles = [n for n in names if n.endswith((".pkl", ".pickle")) or
                       n.rsplit("/", 1)[-1] == "data.pkl"]
            if pickles:
                raise _refused(path, f"is a zip of pickles ({pickles[0]}: a PyTorch "
                                     "checkpoint or the like): loading it runs code")
            if suffix != ".keras":
                raise _refused(path, "is a zip archive, not an ONNX model")
            if "config.json" not in names:
                raise _refused(path, "is a zip without config.json: not a Keras 3 file")
            if sum(m.file_size for m in members) > 4 * limit or len(members) > 64:
                raise _refused(path, "unpacks to far more than it weighs (a zip bomb?)")
            if any(n.startswith(("/", "\\")) or ".." in n.split("/") for n in names):
                raise _refused(path, "holds a member that climbs out of the archive")
            config = json.loads(archive.read("config.json").decode("utf-8"))
    except zipfile.BadZipFile as exc:
        raise _refused(path, f"is a damaged zip archive ({exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refused(path, f"has a config.json that is not JSON ({exc})") from None
    problem = _code_in_keras_config(config)
    if problem:
        raise _refused(path, problem)
    return "keras"


def _code_in_keras_config(config) -> str | None:
    """What in a Keras config needs code to load, if anything: a Lambda layer, a
    serialized Python function, a layer or object from outside Keras. The compile
    config (losses, metrics: often the user's own functions) is not looked at: the
    Keras backend loads with compile=False, so it is never deserialized."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            name = item.get("class_name")
            module = item.get("module")
            if name in ("Lambda", "__lambda__", "function", "__function__") and \
                    isinstance(module, (str, type(None))):
                return (f"holds a {name} ({item.get('config', {}).get('name', '')!s}): "
                        "its Python code would have to run to load it, which safe mode "
                        "refuses")
            if isinstance(name, str) and isinstance(module, str) and module and \
                    module not in ("keras", "builtins") and not module.startswith("keras."):
                return (f"holds {name} from the module {module}: custom code, which the "
                        "service never imports")
            registered = item.get("registered_name")
            if isinstance(registered, str) and ">" in registered:
                return (f"holds the custom object {registered}: custom code, which the "
                        "service never imports")
            stack.extend(v for k, v in item.items() if k != "compile_config")
    return None


def _check_onnx(path: Path) -> None:
    """onnx.checker on the file, in a child process (a hostile protobuf can crash a
    native parser), with external data refused."""
    code = ("import sys; from pathlib import Path\n"
            "from onnxport.errors import BadInput\n"
            "from onnxport_onnx.loading import read_model\n"
            "try:\n    read_model(Path(sys.argv[1]))\n"
            "except BadInput as exc:\n    print(exc.message); sys.exit(3)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _refused(path, "could not be checked within 120 s") from None
    if done.returncode == 3:
        said = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else \
            "fails onnx.checker"
        raise _refused(path, said.removeprefix(f"{path.name} "))
    if done.returncode != 0:
        raise _refused(path, f"crashed the ONNX checker (exit {done.returncode})")


def _refused(path: Path, why: str) -> ApiError:
    return ApiError(415, "unsupported_format", f"{path.name} {why}",
                    "upload a self-contained .onnx file, or a .keras file saved by Keras 3 "
                    "with built-in layers only")

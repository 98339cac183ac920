"""Option groups every stage that reads records shares: input layout and domain mapping.

Flattened into each command's flags by the CLI generator (``--format``, ``--split``, ``--subset``,
``--image-root``; ``--domain-map``, ``--default-domain``), so pack, grade-difficulty, rlcs and
convert read a dataset the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from glmv_cli.data.formats.readers import FORMATS
from glmv_cli.errors import GlmvError
from glmv_cli.options import opt


@dataclass
class DataFormatConfig:
    """How inputs are read (see docs/data-formats.md)."""

    format: str = opt("auto", "Row layout of the inputs: auto (detected per file from its first row), glmv, messages "
                              "(HF/TRL/OpenAI chat rows), sharegpt (LLaMA-Factory), verl or easyr1.",
                      choices=("auto", *FORMATS))
    split: Optional[str] = opt(None, "Split of a Hub dataset (hf:owner/name) or of a datasets folder with several "
                                     "splits.")
    subset: Optional[str] = opt(None, "Configuration (subset) of a Hub dataset.")
    image_root: Optional[Path] = opt(None, "Directory relative image paths are read from (default: the data file's "
                                           "directory; for hf: datasets the current directory).")

    def check(self) -> None:
        if self.image_root is not None and not Path(self.image_root).is_dir():
            raise GlmvError(f"--image-root '{self.image_root}' is not a directory")

    def open(self, spec: str, what: str = "--input") -> Any:
        """The :class:`glmv_cli.data.formats.containers.Source` of one input."""
        from glmv_cli.data.formats.containers import open_source

        return open_source(str(spec), split=self.split, subset=self.subset, image_root=self.image_root, what=what)

    def format_of(self, source: Any) -> str:
        """The forced --format, or the one detected from the source's first row."""
        from glmv_cli.data.formats import resolve_format

        return resolve_format(source, self.format)


@dataclass
class DomainConfig:
    """Which verifier domain a row belongs to."""

    domain_map: list[str] = opt([], "SOURCE=DOMAIN: rows whose domain (verl and EasyR1: data_source) is SOURCE are read "
                                    "as DOMAIN, e.g. hiyouga/geometry3k=math; repeatable.")
    default_domain: Optional[str] = opt(None, "Domain of rows that name none (EasyR1, TRL or ShareGPT rows without a "
                                              "domain or data_source column).")

    def check(self) -> None:
        self.mapping()
        if self.default_domain is not None and not self.default_domain.strip():
            raise GlmvError("--default-domain must not be empty")

    def mapping(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.domain_map:
            src, sep, dst = str(item).rpartition("=")
            if not sep or not src.strip() or not dst.strip():
                raise GlmvError(f"--domain-map '{item}': expected SOURCE=DOMAIN, e.g. hiyouga/geometry3k=math")
            src, dst = src.strip(), dst.strip()
            if out.get(src, dst) != dst:
                raise GlmvError(f"--domain-map maps '{src}' twice ({out[src]} and {dst})")
            out[src] = dst
        return out

    def apply(self, domain: Any) -> Any:
        """The domain a row is scored under (unchanged when not mapped; the default when it has none)."""
        if domain is None or (isinstance(domain, str) and not domain):
            return self.default_domain
        return self.mapping().get(domain, domain) if isinstance(domain, str) else domain

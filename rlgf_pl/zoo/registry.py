"""Where zoo models live, and building them on first use."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info

from rlgf_pl.errors import ConfigError

ZOO_PREFIX = "zoo:"
BUILD_THREADS = 2
"""CPU threads while building: float sums (and so the trained weights) depend on the thread count, and a
fixed count gives every CPU machine the same zoo for the same library versions. GPU builds differ."""


@dataclass(frozen=True)
class ZooEntry:
    """A buildable model: `build(directory)` writes it with `save_pretrained`. `available()` says whether what
    it is built from is installed (`rlgf zoo build` with no names builds only those). `version` names the
    recipe: raising it rebuilds caches made by an older one."""

    name: str
    description: str
    build: Callable[[Path], None]
    depends_on: tuple[str, ...] = ()
    available: Callable[[], bool] = lambda: True
    version: int = 1


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    ZOO[entry.name] = entry
    return entry


def cache_dir() -> Path:
    """`$RLGF_CACHE`, else `$XDG_CACHE_HOME/rlgf_pl`, else `~/.cache/rlgf_pl`."""
    if os.environ.get("RLGF_CACHE"):
        return Path(os.environ["RLGF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlgf_pl"


def zoo_path(name: str) -> Path:
    return cache_dir() / "zoo" / name


@contextmanager
def fixed_torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` intra-op CPU threads, then restore the caller's setting."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load_entries() -> None:
    # Importing the builders registers them; kept lazy so `import rlgf_pl` stays light.
    from rlgf_pl.zoo import concepts, imdb, ladder, smollm2, toy  # noqa: F401


def built_version(directory: Path) -> int | None:
    """The recipe version a finished build recorded in its DONE file (1 for builds from before versions);
    None when there is no finished build."""
    done = directory / "DONE"
    if not done.is_file():
        return None
    for line in done.read_text().splitlines():
        if line.startswith("version "):
            return int(line.split()[1])
    return 1


def build_stamp(directory: Path) -> str | None:
    """What names one finished build: a hash of its DONE file, which differs between any two builds."""
    done = directory / "DONE"
    return hashlib.sha256(done.read_bytes()).hexdigest()[:16] if done.is_file() else None


def is_current(entry: ZooEntry) -> bool:
    """Whether the cache holds `entry` from its current recipe, built from the builds of its dependencies that
    are cached now, which are current themselves (a rebuilt or outdated learner makes the guide built from it
    outdated). Builds from before dependencies were recorded are taken as built from the cached ones."""
    target = zoo_path(entry.name)
    if built_version(target) != entry.version:
        return False
    lines = (target / "DONE").read_text().splitlines()
    recorded = [line.split()[1:3] for line in lines if line.startswith("depends ")]
    return (all(build_stamp(zoo_path(dependency)) == stamp for dependency, stamp in recorded)
            and all(is_current(ZOO[dependency]) for dependency in entry.depends_on))


def ensure_built(name: str) -> Path:
    """Build zoo model `name` (and what it depends on) unless the cache holds it from the current recipe and
    the cached builds of its dependencies; return its directory. A failed build leaves the cache as it was."""
    _load_entries()
    if name not in ZOO:
        raise ConfigError(f"Unknown zoo model {name!r}; the zoo has {sorted(ZOO)} (see `rlgf zoo list`).")
    entry = ZOO[name]
    for dependency in entry.depends_on:
        ensure_built(dependency)
    target = zoo_path(name)
    if is_current(entry):
        return target
    found, old_stamp = built_version(target), build_stamp(target)
    started = time.perf_counter()
    why = (f"is from recipe {found}" if found != entry.version else
           f"was built from an older build of {' or '.join(map(repr, entry.depends_on))}")
    rank_zero_info(f"[rlgf zoo] building {name!r} into {target} ..." if found is None else
                   f"[rlgf zoo] the cached {name!r} {why}; rebuilding it with recipe {entry.version} ...")
    depends = "".join(f"depends {dependency} {build_stamp(zoo_path(dependency))}\n" for dependency in entry.depends_on)
    staging = target.with_name(f".{name}.building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # A fresh context: built on first use inside `rlgf fit`, the zoo's SFT modules would otherwise read the
        # run's model arguments from LightningCLI's hyperparameter ContextVar instead of their own.
        with fixed_torch_threads(BUILD_THREADS):
            contextvars.Context().run(entry.build, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed or interrupted build leaves nothing behind
        raise
    (staging / "DONE").write_text(f"version {entry.version}\nbuilt in {time.perf_counter() - started:.1f}s\n"
                                  f"finished {time.time_ns()} by {os.getpid()}\n{depends}")
    if old_stamp is not None and build_stamp(target) == old_stamp:  # still the outdated build: set it aside
        retired = target.with_name(f".{name}.retired-{os.getpid()}")
        with contextlib.suppress(OSError):  # another process moved it first
            target.rename(retired)
        shutil.rmtree(retired, ignore_errors=True)
    try:
        staging.rename(target)  # atomic: concurrent builders (DDP ranks) never see half a model
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process finished first
    rank_zero_info(f"[rlgf zoo] built {name!r} in {time.perf_counter() - started:.1f}s")
    return target


def resolve_model_path(name_or_path: str) -> str:
    """`zoo:<name>` -> the built zoo directory; anything else (hub id, local path) is returned unchanged."""
    if name_or_path.startswith(ZOO_PREFIX):
        return str(ensure_built(name_or_path[len(ZOO_PREFIX) :]))
    return name_or_path


def zoo_main(argv: list[str]) -> int:
    """`rlgf zoo list` and `rlgf zoo build [NAME ...]`."""
    import argparse

    _load_entries()
    parser = argparse.ArgumentParser(prog="rlgf zoo", description="Offline model zoo, built from PyPI data.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List zoo models, whether each is built and where.")
    build = sub.add_parser("build", help="Build zoo models now (all when no name is given).")
    build.add_argument("names", nargs="*", help=f"zoo names, from {sorted(ZOO)} (none: every one whose source "
                       "is installed)")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(f"zoo cache: {cache_dir() / 'zoo'}  (set RLGF_CACHE to move it)")
        for name, entry in sorted(ZOO.items()):
            found = built_version(zoo_path(name))
            built = "not built" if found is None else "built" if is_current(entry) else "outdated"
            built = built if entry.available() or found is not None else "not installed"
            print(f"  zoo:{name:<22} {built:<13} {entry.description}")
        return 0
    for name in args.names or sorted(name for name, entry in ZOO.items() if entry.available()):
        print(f"zoo:{name} -> {ensure_built(name)}")
    return 0

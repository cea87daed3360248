"""Local images from recipes under images/: no registry is ever used.

Each recipe is a directory holding `recipe.toml`:

    tag = "bgc/python:3"        # the image it makes
    kind = "dockerfile"         # busybox | debootstrap | dockerfile
    base = "debian"             # dockerfile only: a recipe built first (optional)
    suite = "bookworm"          # debootstrap only

`busybox` imports a root filesystem made of the host's static busybox (Debian's
busybox-static); `debootstrap` imports a minimal Debian made by debootstrap; `dockerfile`
runs `docker build` on the recipe directory (its Dockerfile installs Debian packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

KINDS = ("busybox", "debootstrap", "dockerfile")
BUSYBOX = Path("/bin/busybox")


class BuildError(Exception):
    """An image could not be built; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Recipe:
    name: str
    tag: str
    kind: str
    directory: Path
    base: str | None = None
    suite: str = "bookworm"


def default_recipe_dir() -> Path:
    """`BGC_RECIPES`, else ./images, else the images/ beside this source tree."""
    if env := os.environ.get("BGC_RECIPES"):
        return Path(env)
    here = Path.cwd() / "images"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "images"


def image_present(tag: str) -> bool:
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return found.returncode == 0


@dataclass(frozen=True, slots=True)
class RecipeBook:
    recipes: dict[str, Recipe]

    @classmethod
    def load(cls, directory: str | Path | None = None) -> RecipeBook:
        root = Path(directory) if directory else default_recipe_dir()
        recipes: dict[str, Recipe] = {}
        for path in sorted(root.glob("*/recipe.toml")):
            data = tomllib.loads(path.read_text())
            kind = data.get("kind")
            if kind not in KINDS:
                raise BuildError(f"{path}: kind must be one of {', '.join(KINDS)}")
            recipes[path.parent.name] = Recipe(
                name=path.parent.name,
                tag=str(data["tag"]),
                kind=kind,
                directory=path.parent,
                base=data.get("base"),
                suite=str(data.get("suite", "bookworm")),
            )
        return cls(recipes)

    def names(self) -> list[str]:
        return sorted(self.recipes)

    def build(self, names: list[str], *, only_missing: bool = False) -> list[str]:
        """Builds the named recipes (bases first); returns the tags built or found."""
        done: list[str] = []
        for name in names:
            self._build_one(self._recipe(name), only_missing, done)
        return done

    def _recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            raise BuildError(
                f"no recipe {name!r}; known: {', '.join(self.names()) or 'none'}"
            ) from None

    def _build_one(self, recipe: Recipe, only_missing: bool, done: list[str]) -> None:
        if recipe.tag in done:
            return
        if only_missing and image_present(recipe.tag):
            done.append(recipe.tag)
            return
        if recipe.base:
            self._build_one(self._recipe(recipe.base), True, done)
        if recipe.kind == "busybox":
            _import_rootfs(recipe.tag, _busybox_rootfs)
        elif recipe.kind == "debootstrap":
            _import_rootfs(recipe.tag, lambda root: _debootstrap(root, recipe.suite))
        else:
            _run(["docker", "build", "--quiet", "--tag", recipe.tag, str(recipe.directory)])
        done.append(recipe.tag)


def _run(command: list[str], **kwargs: object) -> None:
    try:
        subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"`{' '.join(command)}` failed: {exc}") from exc


def _import_rootfs(tag: str, populate: object) -> None:
    """Makes a root filesystem in a fresh temp dir, imports it as `tag`, removes the dir."""
    root = Path(tempfile.mkdtemp(prefix="bgc-rootfs-"))
    try:
        populate(root)  # type: ignore[operator]
        for directory in ("bg", "tmp"):
            (root / directory).mkdir(exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            _run(["docker", "import", "-", tag], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _busybox_rootfs(root: Path) -> None:
    if not BUSYBOX.is_file():
        raise BuildError("no /bin/busybox: install Debian's busybox-static (`make setup` does)")
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (bin_dir / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/tmp:/bin/sh\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _debootstrap(root: Path, suite: str) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildError(
            "debootstrap is missing: `apt-get install debootstrap` (`make setup` does)"
        )
    _run(
        ["debootstrap", "--variant=minbase", suite, str(root)],
        stdout=subprocess.DEVNULL,
    )


def export_rootfs(image: str, root: Path) -> Path:
    """Unpacks an image's files into `root` (to run its very binaries natively, e.g. as the
    reference of a measurement). Returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    created = subprocess.run(
        ["docker", "create", image, "true"], capture_output=True, text=True, check=False
    )
    if created.returncode != 0:
        raise BuildError(f"cannot create a container of {image}: {created.stderr.strip()}")
    container = created.stdout.strip()
    try:
        exported = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        try:
            _run(["tar", "-x", "-C", str(root)], stdin=exported.stdout)
        finally:
            assert exported.stdout is not None
            exported.stdout.close()
            exported.wait()
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
    return root

"""Root file systems for the OCI engine: each local Docker image, unpacked once, read-only.

Docker stays the image store and builder: an image is exported from the local engine (a
container made from it, never started, read as a tar) and unpacked under
`<cache>/<image id>/rootfs`. The key is the image's id, so a rebuilt image (a new id under
the same name) is unpacked anew and a run never sees a stale root. Every run of the image
mounts that directory read-only; runs write only to their own tmpfs mounts.

The mount points a run's mounts need are made here, once (config.MOUNT_DIRS/MOUNT_FILES),
so that no run ever writes into the shared root. An unpack goes to a private directory
renamed into place when complete: a crash leaves a `.partial` directory, never a
half-unpacked root that a run could take for whole.

The roots of images the engine no longer has (removed, or replaced by a rebuild under the
same name) are removed at start-up and after each unpack (`remove_stale`): the cache holds
at most the images the engine holds. An image removed while a run of it starts may fail
that run; the engine would refuse it a moment later anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import structlog

from bgcompiler.errors import BgcError, SandboxError
from bgcompiler.sandbox.engine import Engine
from bgcompiler.sandbox.oci.config import MOUNT_DIRS, MOUNT_FILES

log = structlog.get_logger(__name__)

PARTIAL = ".partial"


def image_key(image_id: str) -> str:
    """The cache's directory name for an image id (`sha256:<hex>` -> `<hex>`)."""
    key = image_id.rsplit(":", 1)[-1]
    if not key.isalnum():
        raise SandboxError(f"the engine gave an unusable image id {image_id!r}")
    return key


class RootfsCache:
    """Image id -> its unpacked, read-only root, made on first use."""

    def __init__(
        self, engine: Engine, directory: Path, labels: dict[str, str], instance_id: str
    ) -> None:
        self._engine = engine
        self._dir = directory
        self._labels = labels  # on the export containers, so a crash's leftovers are found
        self._instance = instance_id  # in the name of its unpacks in progress
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, image_id: str) -> Path:
        return self._dir / image_key(image_id) / "rootfs"

    async def rootfs(self, image_id: str) -> Path:
        """The image's root, unpacked now if this is its first run here."""
        target = self.path(image_id)
        if target.is_dir():
            return target
        key = image_key(image_id)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if not target.is_dir():
                await self._unpack(image_id, target.parent)
        return target

    async def remove_stale(self) -> list[str]:
        """Removes the roots of images the engine no longer has; their keys."""
        if not self._dir.is_dir():
            return []
        present = {image_key(image_id) for image_id in await self._engine.image_ids()}
        stale = [
            entry
            for entry in self._dir.iterdir()
            if not entry.name.endswith(PARTIAL) and entry.name not in present
        ]
        for entry in stale:
            # Out of the way at once (a run looks for `<key>/rootfs`), then removed.
            doomed = self._dir / self._partial_name(entry.name)
            with contextlib.suppress(FileNotFoundError):  # another instance took it
                entry.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
        if stale:
            log.info("unpacked roots of removed images deleted", images=[e.name for e in stale])
        return [entry.name for entry in stale]

    def _partial_name(self, key: str) -> str:
        return f"{key}.{self._instance}.{secrets.token_hex(4)}{PARTIAL}"

    def remove_partial(self, is_dead: Callable[[str], bool]) -> None:
        """Removes what unpacks cut short by a crash left: the `.partial` directories of
        instances that `is_dead` (another live instance sharing the cache may be unpacking
        into its own)."""
        if not self._dir.is_dir():
            return
        for entry in self._dir.iterdir():
            if not entry.name.endswith(PARTIAL):
                continue
            parts = entry.name.split(".")
            owner = parts[1] if len(parts) == 4 else ""
            if not owner.isalnum() or is_dead(owner):
                shutil.rmtree(entry, ignore_errors=True)

    async def _unpack(self, image_id: str, final: Path) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        work = self._dir / self._partial_name(final.name)
        root = work / "rootfs"
        root.mkdir(parents=True)
        begun = asyncio.get_running_loop().time()
        try:
            container = await self._engine.create(
                {
                    "Image": image_id,
                    "Cmd": ["none"],
                    "Labels": self._labels,
                    "NetworkDisabled": True,
                }
            )
            try:
                await self._export_into(container, root)
            finally:
                with contextlib.suppress(BgcError):
                    await self._engine.remove(container)
            _make_mount_points(root)
            root.chmod(0o755)
            try:
                work.rename(final)
            except OSError:  # another instance unpacked it meanwhile: theirs is as good
                if not (final / "rootfs").is_dir():
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        took = asyncio.get_running_loop().time() - begun
        log.info("image unpacked for the oci engine", image=image_id, seconds=round(took, 2))
        with contextlib.suppress(BgcError):  # a rebuild is the likely reason for this unpack
            await self.remove_stale()

    async def _export_into(self, container: str, root: Path) -> None:
        tar = await asyncio.create_subprocess_exec(
            "tar",
            "-x",
            "--numeric-owner",
            "-C",
            str(root),
            "-f",
            "-",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert tar.stdin is not None

        async def write(chunk: bytes) -> None:
            assert tar.stdin is not None
            tar.stdin.write(chunk)
            await tar.stdin.drain()

        try:
            await self._engine.export(container, write)
            tar.stdin.close()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                tar.kill()
            await tar.wait()
            raise
        _, errors = await tar.communicate()
        if tar.returncode != 0:
            raise SandboxError(f"cannot unpack the image: {errors.decode(errors='replace')}")


def _make_mount_points(root: Path) -> None:
    for name in (*MOUNT_DIRS, *MOUNT_FILES):
        path = resolve_inside(root, name)
        if name in MOUNT_DIRS:
            path.mkdir(mode=0o755, parents=True, exist_ok=True)
        elif not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o755))


def resolve_inside(root: Path, name: str) -> Path:
    """`name` inside `root`, its symbolic links followed as the container would see them:
    an absolute link is taken from `root`, and `..` never climbs above it. So an image's
    link (merged /usr's `/sbin -> usr/sbin`, or a hostile `/etc -> /etc`) never leads the
    unpacking out of the image's root."""
    parts = [part for part in name.split("/") if part]
    resolved: list[str] = []
    for _ in range(64):  # at most this many links followed
        if not parts:
            return root.joinpath(*resolved)
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = root.joinpath(*resolved, part)
        if here.is_symlink():
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            parts = [piece for piece in target.split("/") if piece] + parts
        else:
            resolved.append(part)
    raise SandboxError(f"too many symbolic links under {name!r} in the image")

"""``virtkit image build|list``: the default guest images."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from virtkit.errors import VirtkitError
from virtkit.images import KNOWN_IMAGES, Image, build_image, list_images
from virtkit.images.build import DEFAULT_KERNEL_PACKAGE, describe, prune_images

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)

EXIT_ERROR = 125  # as `virtkit` itself: a virtkit error
EXIT_INTERRUPTED = 130


def _fail(exc: VirtkitError) -> typer.Exit:
    err.print(f"[bold red]virtkit: error:[/] {exc.message}", highlight=False)
    if exc.hint:
        err.print(f"  fix: {exc.hint}", highlight=False, markup=False)
    return typer.Exit(EXIT_ERROR)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


@app.command()
def build(
    name: Annotated[str, typer.Argument(help=f"Image to build: {', '.join(KNOWN_IMAGES)}.")] = "tiny",
    kernel_package: Annotated[
        str, typer.Option("--kernel-package", help="Debian package with the guest kernel.")
    ] = DEFAULT_KERNEL_PACKAGE,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a valid cached image exists.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build an image from distro packages (or reuse the cached one when nothing changed)."""
    progress = Progress(
        TextColumn(f"[bold]image {name}[/]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=json_out,
    )
    task = progress.add_task("checking the cache", total=1.0)

    def report(stage: str, fraction: float) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, description=stage, completed=fraction)

    start = time.monotonic()
    try:
        img = build_image(name, kernel_package=kernel_package, force=force, progress=report)
    except VirtkitError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        progress.stop()
        err.print("virtkit: interrupted; the partial build was removed, the cache is unchanged", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        progress.stop()
    if json_out:
        out.print_json(json.dumps(describe(img)))
        return
    out.print(
        f"{img.name}: kernel {img.kernel_version}, {_human_size(img.size_bytes)}, digest {img.digest[:12]} "
        f"({time.monotonic() - start:.1f}s)",
        highlight=False,
    )
    out.print(f"  kernel {img.kernel}\n  initrd {img.initrd}", highlight=False)


def _table(images: list[Image]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "KERNEL", "SIZE", "DIGEST", "BUILT"):
        table.add_column(col, justify="right" if col == "SIZE" else "left", no_wrap=True)
    for img in images:
        table.add_row(img.name, img.kernel_version, _human_size(img.size_bytes), img.digest[:12], _when(img.built_at))
    return table


@app.command()
def prune(
    keep: Annotated[int, typer.Option("--keep", min=1, help="Newest valid images to keep per name.")] = 1,
) -> None:
    """Delete older and broken images and the downloaded packages no kept image needs."""
    try:
        removed = prune_images(keep)
    except VirtkitError as exc:
        raise _fail(exc) from None
    for path in removed:
        out.print(f"removed {path}", highlight=False)
    out.print(f"{len(removed)} item(s) removed", highlight=False)


@app.command("list")
def list_cmd(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Cached images (entries that fail verification are left out)."""
    try:
        images = list_images()
    except VirtkitError as exc:
        raise _fail(exc) from None
    if json_out:
        out.print_json(json.dumps([describe(i) for i in images]))
        return
    if not images:
        err.print("no images yet; build one with `virtkit image build`", highlight=False)
        return
    out.print(_table(images))

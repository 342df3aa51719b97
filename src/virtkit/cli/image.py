"""``virtkit image build|list|prune``: the default guest images."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from virtkit.cli import output
from virtkit.config import defaults

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


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
    name: Annotated[str, typer.Argument(metavar="IMAGE", help="Image to build.")] = defaults.DEFAULT_IMAGE,
    kernel_package: Annotated[
        str | None,
        typer.Option("--kernel-package", help="Debian package with the guest kernel (default: the cloud kernel)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if a valid cached image exists.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build an image from distro packages (or reuse the cached one when nothing changed)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from virtkit import images
    from virtkit.images.build import describe

    progress = Progress(
        TextColumn(f"[bold]image {name}[/]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=output.consoles()[1],
        transient=True,
        disable=json_out,
    )
    task = progress.add_task("checking the cache", total=1.0)

    def report(stage: str, fraction: float) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, description=stage, completed=fraction)

    start = time.monotonic()
    kw: dict[str, Any] = {"kernel_package": kernel_package} if kernel_package else {}
    try:
        with output.reported(output.docker_code):
            try:
                img = images.build_image(name, force=force, progress=report, **kw)
            except KeyboardInterrupt:
                progress.stop()
                output.note("virtkit: interrupted; the partial build was removed, the cache is unchanged")
                raise typer.Exit(output.EXIT_INTERRUPTED) from None
    finally:
        progress.stop()
    if json_out:
        output.print_json(describe(img))
        return
    output.line(
        f"{img.name}: kernel {img.kernel_version}, {_human_size(img.size_bytes)}, digest {img.digest[:12]} "
        f"({time.monotonic() - start:.1f}s)"
    )
    output.line(f"  kernel {img.kernel}\n  initrd {img.initrd}")


@app.command()
def prune(
    keep: Annotated[int, typer.Option("--keep", min=1, help="Newest valid images to keep per name.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="The removed paths as a JSON list.")] = False,
) -> None:
    """Delete older and broken images and the downloaded packages no kept image needs."""
    from virtkit.images.build import prune_images

    with output.reported(output.docker_code):
        removed = prune_images(keep)
    if json_out:
        output.print_json([str(p) for p in removed])
        return
    for path in removed:
        output.line(f"removed {path}")
    output.line(f"{len(removed)} item(s) removed")


@app.command("list")
def list_cmd(json_out: JsonOpt = False) -> None:
    """Cached images (entries that fail verification are left out)."""
    from virtkit import images
    from virtkit.images.build import describe

    with output.reported(output.docker_code):
        found = images.list_images()
    if json_out:
        output.print_json([describe(i) for i in found])
        return
    if not found:
        output.note("no images yet; build one with `virtkit image build`")
        return
    output.table(
        ["NAME", "KERNEL", "SIZE", "DIGEST", "BUILT"],
        [[i.name, i.kernel_version, _human_size(i.size_bytes), i.digest[:12], _when(i.built_at)] for i in found],
        right=("SIZE",),
    )

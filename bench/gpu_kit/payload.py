"""What the GPU kit carries to the lent GPU machine, and how it unpacks there.

That machine starts bare: Python 3.12, torch 2.11 (CUDA 13), transformers 5.x, safetensors, numpy, pillow,
httpx (LENT_MACHINE_MODULES), nothing else, no network, and at most 64 MiB travel per call (the working
tree included). So the payload is the pinned ComfyUI as one tar.xz (25 MB of files, ~5 MB packed) plus the
Python 3.12 wheels of what ComfyUI and the product import on the kit's path (WHEELS). PyAV (36 MB) does not
fit next to SciPy (35 MB, which comfy/samplers.py imports at module level): the kit runs with a named
placeholder for it (bench/gpu_kit/no_pyav) and reports encoding as skipped.

    python -m bench.gpu_kit.payload build     # here, with PyPI: .gpu-kit/ (wheels + comfyui.tar.xz), size checked
    bash bench/gpu_kit/lent_machine.sh        # there: unpack (only what is missing), then the full-scale run

Stdlib only: `unpack` runs before anything else is importable there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAYLOAD_DIR = REPO / ".gpu-kit"
WHEELS_DIR = PAYLOAD_DIR / "wheels"
# Unpacked beside the carried folder, not in it: what travels with a call stays the payload alone.
UNPACKED_DIR = REPO / ".gpu-kit-unpacked"
SITE_DIR = UNPACKED_DIR / "site"
COMFYUI_ARCHIVE = PAYLOAD_DIR / "comfyui.tar.xz"
LIMIT_BYTES = 64 << 20
# ComfyUI's folders the kit never imports: its tests and example scripts.
COMFYUI_EXCLUDES = ("tests", "tests-unit", "script_examples", "__pycache__")
PYTHON_TAG = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

# Import names the lent machine has (the list, with the dependencies those packages install).
LENT_MACHINE_MODULES = frozenset({
    "torch", "torchgen", "triton", "nvidia", "cuda", "filelock", "typing_extensions", "sympy", "mpmath", "networkx",
    "jinja2", "markupsafe", "fsspec", "setuptools", "_distutils_hack", "pkg_resources",
    "transformers", "huggingface_hub", "tokenizers", "safetensors", "numpy", "packaging", "yaml", "regex", "tqdm",
    "PIL", "httpx", "httpcore", "h11", "anyio", "sniffio", "idna", "certifi",
})
@dataclass(frozen=True)
class Wheel:
    pin: str  # requirements.txt's pin, except torchvision: it must match the lent machine's torch 2.11 (0.26.x)
    modules: tuple[str, ...]  # its import names
    size: int  # bytes of the cp312 manylinux wheel, as the package index serves it
    sha256: str

    @property
    def dist(self) -> str:
        return self.pin.split("==")[0].lower().replace("_", "-")


WHEELS: list[Wheel] = [
    Wheel("pydantic==2.14.3", ('pydantic',), 494071, "3f7b347782ab7e4cf4c798496ae3a82787d9f21ec12676a9c564355eeef8daa8"),
    Wheel("pydantic-core==2.50.4", ('pydantic_core',), 2261727, "c81d98e27d9d9261909dcccab1ba5d6ea1c98b0bb9470e368604614fd1d36ddd"),
    Wheel("annotated-types==0.8.0", ('annotated_types',), 13427, "f072f4d804ea359e4eaf198b1af7a8b0943881a87f31bb764f8bf219bb9419e0"),
    Wheel("typing-inspection==0.4.5", ('typing_inspection',), 14874, "bc210535442b39e1bf2805e0c7a17dfd6a4ace760c84c7f7d16245d23a6b1c39"),
    Wheel("pydantic-settings==2.16.3", ('pydantic_settings',), 82679, "d1db16a2d34006323a1b42c0640898da58adfbad7ec30baaa9e2b18aafc08999"),
    Wheel("python-dotenv==1.2.4", ('dotenv',), 23266, "42269a8a5b3fd54ffa6f3d84b18abed50064717576b4ecf03dc4a55d8aa04fdc"),
    Wheel("scipy==1.17.1", ('scipy',), 35235890, "02ae3b274fde71c5e92ac4d54bc06c42d80e399fec704383dcd99b301df37458"),
    Wheel("torchvision==0.26.0", ('torchvision',), 7522205, "d61a5abb6b42a0c0c311996c2ac4b83a94418a97182c83b055a2a4ae985e05aa"),
    Wheel("torchsde==0.2.6", ('torchsde',), 61232, "19bf7ff02eec7e8e46ba1cdb4aa0f9db1c51d492524a16975234b467f7fc463b"),
    Wheel("trampoline==0.1.2", ('trampoline',), 5173, "36cc9a4ff9811843d177fc0e0740efbd7da39eadfe6e50c9e2937cbc06d899d9"),
    Wheel("einops==0.8.2", ('einops',), 65638, "54058201ac7087911181bfec4af6091bb59380360f069276601256a76af08193"),
    Wheel("psutil==7.2.2", ('psutil',), 155560, "076a2d2f923fd4821644f5ba89f059523da90dc9014e85f8e45a5774ca5bc6f9"),
    Wheel("sentencepiece==0.2.3", ('sentencepiece',), 1716727, "cc3189b79c1ffda767f71b04238c27ac746f3b7abc263eab9a41c4cf46aee49e"),
    Wheel("aiohttp==3.14.5", ('aiohttp',), 1919630, "20f085697d7e911f1f73c43ed03fafbed1e7121797e2eb5428efa80398060584"),
    Wheel("aiohappyeyeballs==2.7.1", ('aiohappyeyeballs',), 15038, "9243213661e29250eb41368e5daa826fc017156c3b8a11440826b2e3ed376472"),
    Wheel("aiosignal==1.4.0", ('aiosignal',), 7490, "053243f8b92b990551949e63930a839ff0cf0b0ebbe0597b0f3fb19e1a0fe82e"),
    Wheel("attrs==26.1.0", ('attr', 'attrs'), 67548, "c647aa4a12dfbad9333ca4e71fe62ddc36f4e63b2d260a37a8b83d2f043ac309"),
    Wheel("frozenlist==1.8.0", ('frozenlist',), 242411, "494a5952b1c597ba44e0e78113a7266e656b9794eec897b19ead706bd7074383"),
    Wheel("multidict==7.2.1", ('multidict',), 516796, "1fb8c1a3480c130c3a6422d5f16f3cad6552bf08c2089dd288ba7134649183b5"),
    Wheel("propcache==0.5.4", ('propcache',), 250424, "2814ecd8e818f487bee4b0f921bc4d1c176cc5fc71ac0f072d0fa67eda4ac14b"),
    Wheel("yarl==1.25.1", ('yarl',), 117050, "c6f117789d22dce188e5754e8bc65b7e6ebf8cb73963b9fa761f672a5883769d"),
    Wheel("requests==2.34.2", ('requests',), 73075, "2a0d60c172f83ac6ab31e4554906c0f3b3588d37b5cb939b1c061f4907e278e0"),
    Wheel("urllib3==2.8.0", ('urllib3',), 135717, "0cf3cae568d36aa9576b28dfb35f11328f1cb974ca7647d9475ebb86c75ac6e3"),
    Wheel("charset-normalizer==3.5.3", ('charset_normalizer',), 257134, "e5e4785d8a0adeadfbdf75f4efc357911842674651cbafd7e97f69b11ec3cbc6"),
]
PAYLOAD_MODULES = frozenset(name for wheel in WHEELS for name in wheel.modules)
# What the product imports that the kit's path does not need there: PyAV (placeholder), Cog, boto3 (delivery),
# websocket-client (remote backend), kornia and spandrel (ComfyUI extras the kit's graph does not use).
LEFT_BEHIND = ("av", "cog", "boto3", "websocket", "kornia", "spandrel")


def tree_bytes() -> int:
    """Bytes of the working tree that travels: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())


def payload_bytes() -> dict[str, int]:
    sizes = {"tree": tree_bytes()}
    if COMFYUI_ARCHIVE.exists():
        sizes["comfyui.tar.xz"] = COMFYUI_ARCHIVE.stat().st_size
    sizes["wheels"] = sum(p.stat().st_size for p in WHEELS_DIR.glob("*.whl")) if WHEELS_DIR.exists() else 0
    sizes["total"] = sum(sizes.values())
    return sizes


def pack_comfyui(comfyui: Path, target: Path = COMFYUI_ARCHIVE) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(part in COMFYUI_EXCLUDES for part in parts[1:]) else info

    with tarfile.open(target, "w:xz", preset=6) as archive:
        archive.add(comfyui, arcname=comfyui.name, filter=keep)
    return target


def download_wheels(target: Path = WHEELS_DIR) -> list[Path]:
    """The pinned cp312 wheels, each checked against its sha256 by pip (--require-hashes)."""
    target.mkdir(parents=True, exist_ok=True)
    requirements = target / "requirements.txt"
    requirements.write_text("".join(f"{w.pin} --hash=sha256:{w.sha256}\n" for w in WHEELS))
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--require-hashes", "--python-version", PYTHON_TAG, "--implementation", "cp", *platforms,
                    "-d", str(target), "-r", str(requirements)], check=True)
    requirements.unlink()
    return sorted(target.glob("*.whl"))


def planned_bytes(comfyui_archive: Path = COMFYUI_ARCHIVE) -> dict[str, int]:
    """What a call would carry, from the tree, the packed ComfyUI and the pinned wheel sizes (no download)."""
    sizes = {"tree": tree_bytes(), "comfyui.tar.xz": comfyui_archive.stat().st_size, "wheels": sum(w.size for w in WHEELS)}
    sizes["total"] = sum(sizes.values())
    return sizes


def build(comfyui: Path) -> dict[str, int]:
    pack_comfyui(comfyui)
    download_wheels()
    sizes = payload_bytes()
    if sizes["total"] > LIMIT_BYTES:
        raise SystemExit(f"the payload is {sizes['total'] / (1 << 20):.1f} MiB, over the {LIMIT_BYTES >> 20} MiB a call "
                         f"carries ({sizes}); drop a wheel from WHEELS in bench/gpu_kit/payload.py")
    return sizes


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name (the tests' lent-machine emulation does)
        return False


def unpack(payload: Path = PAYLOAD_DIR, target: Path = PAYLOAD_DIR, wheels: list[Wheel] = WHEELS) -> dict[str, object]:
    """On the lent machine: ComfyUI out of its archive; each wheel whose modules are not importable already,
    extracted (a wheel is a zip of its installed files; none of these needs an install step) into
    <target>/site, which lent_machine.sh puts on PYTHONPATH. What the machine has is never shadowed."""
    extracted: list[str] = []
    present: list[str] = []
    with tarfile.open(payload / COMFYUI_ARCHIVE.name) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        if not (target / top / "nodes.py").exists():
            tar.extractall(target, filter="data")
    site = target / SITE_DIR.name
    site.mkdir(parents=True, exist_ok=True)
    files = {p.name.split("-")[0].lower().replace("_", "-"): p for p in (payload / WHEELS_DIR.name).glob("*.whl")}
    for wheel in wheels:
        if all(_importable(m) for m in wheel.modules):
            present.append(wheel.pin)
            continue
        file = files.get(wheel.dist)
        if file is None:
            raise SystemExit(f"{wheel.pin} is missing here and not in {payload / WHEELS_DIR.name}: rebuild the payload "
                             "(python -m bench.gpu_kit.payload build) on a machine with PyPI")
        with zipfile.ZipFile(file) as zipped:
            zipped.extractall(site)
        extracted.append(wheel.pin)
    return {"comfyui": str(target / top), "site": str(site), "extracted": extracted, "present": present}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_kit.payload")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="pack ComfyUI and download the Python 3.12 wheels into .gpu-kit/")
    make.add_argument("--comfyui", type=Path, default=None, help="ComfyUI folder (default: the provisioned one)")
    unpacking = sub.add_parser("unpack", help="on the lent machine: unpack ComfyUI and the wheels it lacks")
    unpacking.add_argument("--target", type=Path, default=UNPACKED_DIR,
                           help="where to (default .gpu-kit-unpacked/, outside the carried folder)")
    sub.add_parser("size", help="bytes that would travel with a call (as built)")
    args = parser.parse_args(argv)
    if args.command == "build":
        comfyui = args.comfyui or REPO / ".cache" / "comfyui-0.3.75"
        print(json.dumps(build(comfyui.resolve())))
    elif args.command == "unpack":
        print(json.dumps(unpack(PAYLOAD_DIR, args.target.resolve())))
    else:
        print(json.dumps(payload_bytes()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())

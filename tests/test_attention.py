"""HV_ATTENTION (backends/attention.py): set through ComfyUI's own switch, refused where it cannot run, naming the fix.

This machine has no GPU: the refusals are tested for real (CPU, package absent); applying `sage` is tested on a
copy of ComfyUI's parsed arguments, and the kernel itself runs in the GPU kit (bench/gpu_kit).
"""

from __future__ import annotations

import pytest
import yaml

from comfy_runtime.backends.attention import KERNELS, AttentionRefused, apply_attention, check_attention
from comfy_runtime.settings import PROJECT_ROOT
from tests.support.predictor import booted_predictor


def test_sage_on_the_cpu_is_refused_at_setup_naming_the_fix(hv_env):
    with pytest.raises(AttentionRefused, match="HV_ATTENTION=sage needs a CUDA GPU") as error:
        booted_predictor({**hv_env, "HV_ATTENTION": "sage"})
    assert "unset HV_ATTENTION (sdpa)" in str(error.value)


def test_sage_on_auto_without_a_gpu_is_refused_before_anything_boots(session_dirs, tmp_path):
    from comfy_runtime.backends.embedded import EmbeddedRuntime

    with pytest.raises(AttentionRefused, match="needs a CUDA GPU"):
        EmbeddedRuntime(PROJECT_ROOT, session_dirs["models"], tmp_path, device="auto", attention="sage")


def test_sage_without_its_package_is_refused_naming_the_pinned_install():
    # on_gpu=True stands in for a GPU this machine lacks; the package check is the real find_spec.
    with pytest.raises(AttentionRefused, match=r"needs the sageattention package, which is not installed: "
                                               r"pip install 'sageattention==1\.0\.6'"):
        check_attention("sage", on_gpu=True, installed=lambda package: False)
    assert check_attention("sage", on_gpu=True, installed=lambda package: True) is KERNELS["sage"]
    assert check_attention("sdpa", on_gpu=False) is KERNELS["sdpa"]


def test_the_setting_reaches_comfyuis_own_switch(runtime):
    from comfy.cli_args import parser

    args = parser.parse_args([])  # ComfyUI's own argument parser: the attribute names are its flags'
    apply_attention(args, "sage")
    assert args.use_sage_attention is True and args == parser.parse_args(["--use-sage-attention"])
    default = parser.parse_args([])
    apply_attention(default, "sdpa")  # ComfyUI's own default choice: no switch set
    assert default == parser.parse_args([])
    for kernel in KERNELS.values():
        assert hasattr(parser.parse_args([]), kernel.switch) and kernel.flag.lstrip("-").replace("-", "_") == kernel.switch


def test_the_remote_backend_refuses_it_naming_the_servers_flag(hv_env):
    with pytest.raises(AttentionRefused, match="start the remote ComfyUI with --use-sage-attention"):
        booted_predictor({**hv_env, "HV_BACKEND": "remote", "HV_ATTENTION": "sage"})


def test_the_image_installs_the_pinned_package():
    steps = yaml.safe_load((PROJECT_ROOT / "cog.yaml").read_text())["build"]["run"]
    assert f"pip install --no-cache-dir '{KERNELS['sage'].requirement}'" in steps
    assert KERNELS["sage"].requirement == "sageattention==1.0.6"


def test_an_unknown_name_is_refused_by_the_settings():
    from pydantic import ValidationError

    from comfy_runtime.settings import Settings

    with pytest.raises(ValidationError, match="sdpa"):
        Settings(attention="flash")

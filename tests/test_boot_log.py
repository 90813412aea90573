"""ComfyUI's boot records through the filter: the torchaudio noise goes, every other failure stays."""

import logging

from comfy_runtime.backends.boot_log import filtered_comfy_boot

TORCHAUDIO_TRACEBACK = (
    "Traceback (most recent call last):\n  File \"nodes.py\", line 2146, in load_custom_node\n"
    "    import torchaudio\nModuleNotFoundError: No module named 'torchaudio'\n"
)


def boot(cpu_only: bool, records: list[tuple[int, str]]):
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    root = logging.getLogger()
    handler, level = Keep(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with filtered_comfy_boot(cpu_only) as boot_filter:
            for levelno, message in records:
                logging.log(levelno, message)  # the root logger, as ComfyUI logs
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return seen, boot_filter


def test_the_torchaudio_failures_become_one_summary_and_other_failures_keep_their_traceback():
    other = "Traceback (most recent call last):\nImportError: cannot import name 'x' from 'y'\n"
    seen, boot_filter = boot(True, [
        (logging.INFO, "Total VRAM 24106 MB, total RAM 24106 MB"),
        (logging.INFO, "Device: cpu"),
        (logging.WARNING, "torchaudio missing, ACE model will be broken"),
        (logging.WARNING, TORCHAUDIO_TRACEBACK),
        (logging.WARNING, "Cannot import /c/comfy_extras/nodes_audio.py module for custom nodes: No module named 'torchaudio'"),
        (logging.WARNING, other),
        (logging.WARNING, "Cannot import /c/custom_nodes/broken module for custom nodes: cannot import name 'x' from 'y'"),
        (logging.INFO, "\nImport times for custom nodes:"),
        (logging.INFO, ""),
        (logging.INFO, "Using sub quadratic optimization for attention, if you have memory or speed issues try using: --use-split-cross-attention"),
    ])
    assert seen == [
        "Device: cpu",
        other.strip(),
        "Cannot import /c/custom_nodes/broken module for custom nodes: cannot import name 'x' from 'y'",
        "Import times for custom nodes:",
        "Using sub quadratic optimization for attention",
    ]
    assert boot_filter.without_torchaudio == ["nodes_audio.py"]
    assert "nodes_audio.py" in boot_filter.summary() and "Harmless for video" in boot_filter.summary()


def test_on_a_gpu_the_vram_line_stays():
    seen, boot_filter = boot(False, [(logging.INFO, "Total VRAM 81559 MB, total RAM 1031000 MB")])
    assert seen == ["Total VRAM 81559 MB, total RAM 1031000 MB"] and boot_filter.summary() is None


def test_the_filter_is_gone_after_the_boot():
    boot(True, [])
    assert not any(type(f).__name__ == "ComfyBootFilter" for f in logging.getLogger().filters)

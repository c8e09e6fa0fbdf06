"""What a run or a measurement ran on: the CPU model, its SIMD flags and its cores.

Training times and benchmark figures mean little without the CPU: the same
recipe ran about six times longer on an AVX2-only EPYC in float32 than on an
AVX512-BF16 one in bfloat16 (docs/MEASUREMENTS.md). Run records (`run_info.json`,
and through them the model cards) and the benchmarks' headers say it with
these functions.
"""

import os
import platform

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx")
"""Prefixes of the /proc/cpuinfo flags that decide oneDNN's kernels here."""


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` line's value in /proc/cpuinfo (None off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (e.g. `"AMD EPYC"`), or the platform's processor."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags(prefixes: tuple[str, ...] = SIMD_FLAGS) -> list[str]:
    """The CPU's flags that start with one of `prefixes`, sorted (empty off Linux).

    Args:
        prefixes: flag prefixes. Defaults to `SIMD_FLAGS`.

    Returns:
        A sorted list of flag names, e.g. `["avx2", "avx512_bf16", "fma"]`.
    """
    flags = (_cpuinfo_field("flags") or "").split()
    return sorted(flag for flag in flags if flag.startswith(tuple(prefixes)))


def describe(host: bool = True) -> str:
    """One line naming the machine, for run records.

    Args:
        host: bool. End with the host name. Defaults to `True`.

    Returns:
        e.g. `"x86_64, 2 CPU cores, AMD EPYC (avx2 avx512_bf16 fma), vm"`.

    Example:
    >>> from trainers import machine
    >>> machine.describe().startswith(f"{machine.platform.machine()}, ")
    True
    """
    flags = " ".join(cpu_flags()) or "no listed SIMD flags"
    parts = [platform.machine(), f"{os.cpu_count()} CPU cores", f"{cpu_model()} ({flags})"]
    return ", ".join(parts + ([platform.node()] if host else []))

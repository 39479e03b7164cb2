"""Board and SoC names of Arm boards from the device tree (Raspberry Pi, Jetson, other single-board computers).

`/proc/cpuinfo` does not name these boards reliably: Raspberry Pi kernels print `Hardware : BCM2835` on every
Pi (a Pi 4 is a BCM2711), and a Jetson's cpuinfo has neither `Hardware` nor `model name`. The device tree does:

    model       "Raspberry Pi 4 Model B Rev 1.4\\0"               the board, as its maker names it
    compatible  "raspberrypi,4-model-b\\0brcm,bcm2711\\0"          most specific first; the SoC last

The kernel writes both NUL-terminated under /proc/device-tree (a link to /sys/firmware/devicetree/base, which
is all some containers have). Every reader takes a filesystem root, so tests use fake trees.
"""

from __future__ import annotations

from w2vprof.devices._fs import read_text

__all__ = [
    "DEVICE_TREE_FOLDERS",
    "parse_device_tree_strings",
    "read_device_tree_model",
    "read_device_tree_compatible",
    "board_name",
    "soc_name",
]

#: Where the kernel exposes the device tree, in the order tried.
DEVICE_TREE_FOLDERS = ("/proc/device-tree", "/sys/firmware/devicetree/base")

#: Vendor prefixes of `compatible` strings, as the vendors write their names.
_VENDORS = {
    "allwinner": "Allwinner",
    "amlogic": "Amlogic",
    "brcm": "Broadcom",
    "mediatek": "MediaTek",
    "nvidia": "NVIDIA",
    "qcom": "Qualcomm",
    "rockchip": "Rockchip",
    "samsung": "Samsung",
    "starfive": "StarFive",
    "ti": "TI",
}


def parse_device_tree_strings(raw: str) -> list[str]:
    """A device-tree string property (each string NUL-terminated) as a list: 'a\\0b\\0' -> ['a', 'b']."""
    return [part.strip() for part in raw.split("\x00") if part.strip()]


def _read_property(root: str, name: str) -> list[str]:
    for folder in DEVICE_TREE_FOLDERS:
        raw = read_text(root, f"{folder}/{name}")
        if raw is not None and parse_device_tree_strings(raw):
            return parse_device_tree_strings(raw)
    return []


def read_device_tree_model(root: str = "/") -> str:
    """'Raspberry Pi 4 Model B Rev 1.4', 'NVIDIA Jetson Xavier NX Developer Kit', or '' without a device tree."""
    model = _read_property(root, "model")
    return model[0] if model else ""


def read_device_tree_compatible(root: str = "/") -> list[str]:
    """['raspberrypi,4-model-b', 'brcm,bcm2711']: the board first, its SoC last; [] without a device tree."""
    return _read_property(root, "compatible")


def board_name(root: str = "/") -> str:
    """The board's model, else its most specific `compatible` string ('radxa,rock-5b'), else ''."""
    compatible = read_device_tree_compatible(root)
    return read_device_tree_model(root) or (compatible[0] if compatible else "")


def soc_name(root: str = "/") -> str:
    """The SoC from the last `compatible` string: 'brcm,bcm2711' -> 'Broadcom BCM2711', 'nvidia,tegra194' ->
    'NVIDIA Tegra194'; '' without a device tree (or when the board lists only itself)."""
    compatible = read_device_tree_compatible(root)
    if len(compatible) < 2 or "," not in compatible[-1]:
        return ""
    vendor, chip = compatible[-1].split(",", 1)
    # Short letter prefixes are initials (bcm, rk, sm, mt): upper case; words (tegra) are capitalised.
    letters = len(chip) - len(chip.lstrip("abcdefghijklmnopqrstuvwxyz"))
    chip = chip.upper() if letters <= 3 else chip[:1].upper() + chip[1:]
    return f"{_VENDORS.get(vendor, vendor)} {chip}"

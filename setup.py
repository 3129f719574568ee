"""Packaging hook: the top-level data folders (the source) ship inside the wheel as hwnas/_data/<kind>."""

from setuptools import find_packages, setup

# kind -> files shipped; `hwnas.fileio.data_dir(kind)` finds them in a wheel or in the source tree.
DATA = {
    "devices": ["*.yaml"],
    "latency_tables": ["README.md", "*/*.json"],
    "search": ["*.yaml"],
    "export": ["*.yaml"],
    "benchmarks/tables": ["README.md", "*.csv"],
}
PACKAGES = {"hwnas._data." + kind.replace("/", "."): kind for kind in DATA}

setup(
    packages=find_packages(include=["hwnas", "hwnas.*"]) + list(PACKAGES),
    package_dir=PACKAGES,
    package_data={"hwnas.latency": ["priors/*.json"], **{pkg: DATA[folder] for pkg, folder in PACKAGES.items()}},
)

"""Only a build hook; the project metadata is in pyproject.toml.

`conf/` (the Hydra config groups) lives beside the package in a checkout. A non-editable install
(`pip install .`) copies it into the package as `drivesim/conf`, where drivesim.config.compose
finds it when there is no checkout around it.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads conf/ from the checkout
        source = Path(__file__).resolve().parent / "conf"
        target = Path(self.build_lib) / "drivesim" / "conf"
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConf})

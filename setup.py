"""The package list: setuptools cannot find a package whose directory has another name, and
the Jinja2 templates people customise live in the top-level ``templates/`` directory, installed
as ``incidentbot_templates`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["incidentbot*"]), "incidentbot_templates"])

"""Installs tb-matmul-explainer and registers it as a TensorBoard plugin."""

import pathlib

import setuptools

setuptools.setup(
    name="tb-matmul-explainer",
    version="0.1.0",
    description="TensorBoard plugin that explains why a layer's outputs or gradients are near zero",
    long_description=pathlib.Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["tb_matmul_explainer", "tb_matmul_explainer.*"]),
    package_data={"tb_matmul_explainer": ["static/*", "static/**/*"]},
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22; platform_system == 'Linux'",
        "tensorflow>=2.21,<2.22; platform_system != 'Linux'",
        "tensorboard>=2.21,<2.22",
        "numpy>=1.26",
        "werkzeug>=2.0",
    ],
    entry_points={
        "tensorboard_plugins": ["matmul_explainer = tb_matmul_explainer.plugin:MatmulExplainerLoader"],
    },
    extras_require={
        "test": ["tensorflow-probability==0.25.0", "hypothesis>=6.100", "pytest>=8", "pandas>=2", "ruff>=0.17"],
    },
)

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "ldseg_tf" / "__init__.py").read_text()).group(1)
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="ldseg-tf",
    version=VERSION,
    description="LDSeg: latent diffusion for medical image segmentation, in TensorFlow/Keras 3",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["ldseg_tf", "ldseg_tf.*", "data_builders", "data_builders.*"]),
    install_requires=REQUIREMENTS,
    extras_require={"serving": ["grpcio>=1.60,<2"]},
    entry_points={"console_scripts": ["ldseg=ldseg_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

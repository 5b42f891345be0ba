"""pip entry point for the developer venv (`pip install -e .`, done by `make setup`).

colcon/ament_cmake ignore this file (package.xml says build_type ament_cmake); the messages are
built by CMakeLists.txt in both workflows.
"""

from setuptools import find_packages, setup

setup(
    # NOT "bdc_occ_ros": rosidl installs an egg-info with that name into the venv, and pip would
    # "uninstall" it, deleting site-packages/bdc_occ_ros (the generated messages).
    name="bdc-occ-ros-dev",
    version="0.1.0",
    description="BDC-Occ binarized camera occupancy network and its ROS 2 node",
    license="Apache-2.0",
    packages=find_packages(include=["bdc_occ_ros", "bdc_occ_ros.*"]),
    # {"": "."} makes the editable install a plain .pth with the repository root (not an import
    # hook), so pkgutil.extend_path in bdc_occ_ros/__init__.py can merge it with the generated code.
    package_dir={"": "."},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "pyyaml>=6",
        "safetensors>=0.4",
        "rosbags>=0.10",
        "numba>=0.60",
        'tbb>=2021.6; platform_machine == "x86_64"',
        "threadpoolctl>=3.1",
        "tqdm>=4.60",
    ],
    extras_require={
        "synth": ["open3d-cpu>=0.18"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "nuscenes": ["nuscenes-devkit>=1.1"],
    },
    entry_points={
        "console_scripts": [
            "bdc-occ = bdc_occ_ros.cli:main",
            "bdc_occ_node = bdc_occ_ros.ros.node:main",
        ],
    },
)

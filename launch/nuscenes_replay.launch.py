"""Run bdc_occ_node on a replayed nuScenes rosbag2 (sim time), with topic presets for the common layouts.

    ros2 launch bdc_occ_ros nuscenes_replay.launch.py bag:=/path/to/scene.mcap layout:=nuscenes_rosbag rviz:=true

``layout`` (ros_conventions.md §3):
  nuscenes_rosbag      /CAM_FRONT/image_rect_compressed (jpeg) + /CAM_FRONT/camera_info — TIER IV
                       nuscenes_rosbag, foxglove nuscenes2bag lineage and ``bdc-occ bag synth/from-nuscenes``
  nuscenes2bag         cam_front/raw (sensor_msgs/Image bgr8), no CameraInfo — clynamen/nuscenes2bag and its
                       ROS 2 port; intrinsics come from calibration_file
  ros2_dataset_bridge  /nuscenes/CAM_FRONT/image (raw) + /nuscenes/CAM_FRONT/camera_info; publish bgr8 (the
                       bridge's default 'passthrough' encoding is rejected and counted on /diagnostics)

``bag`` (optional) is played with ``ros2 bag play --clock``; without it, play the bag yourself with
``--clock``. ``calibration_file`` defaults to the shipped nuScenes calibration; use the YAML written beside
a ``bdc-occ bag synth`` bag for synthetic bags. use_sim_time is true.
"""

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    OpaqueFunction,
    SetEnvironmentVariable,
)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "bdc_occ_ros"
#: Node parameters per bag layout.
PRESETS = {
    "nuscenes_rosbag": {"transport": "compressed", "image_topic": "/{camera}/image_rect_compressed",
                        "camera_info_topic": "/{camera}/camera_info", "use_camera_info": "true"},
    "nuscenes2bag": {"transport": "raw", "image_topic": "{camera_lower}/raw",
                     "camera_info_topic": "{camera_lower}/camera_info", "use_camera_info": "false"},
    "ros2_dataset_bridge": {"transport": "raw", "image_topic": "/nuscenes/{camera}/image",
                            "camera_info_topic": "/nuscenes/{camera}/camera_info", "use_camera_info": "true"},
}
#: Arguments passed through to bdc_occ.launch.py unchanged.
PASSED = ("params_file", "model_config", "checkpoint", "engine", "device", "namespace", "rviz")


def _setup(context):
    layout = LaunchConfiguration("layout").perform(context)
    if layout not in PRESETS:
        raise ValueError(f"layout:={layout!r} is not one of {', '.join(PRESETS)}")
    share = FindPackageShare(PACKAGE)
    launch_arguments = {
        **{name: LaunchConfiguration(name) for name in PASSED},
        "calibration_file": LaunchConfiguration("calibration_file"),
        "use_sim_time": "true",
        **PRESETS[layout],
    }
    actions = [
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "bdc_occ.launch.py"])),
            launch_arguments=list(launch_arguments.items()),
        )
    ]
    bag = LaunchConfiguration("bag").perform(context)
    if bag:
        actions.append(ExecuteProcess(cmd=["ros2", "bag", "play", "--clock", bag], output="screen"))
    return actions


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    profile = PathJoinSubstitution([share, "config", "fastdds_shm.xml"])
    return LaunchDescription([
        DeclareLaunchArgument("layout", default_value="nuscenes_rosbag", choices=list(PRESETS),
                              description="topic layout of the bag"),
        DeclareLaunchArgument("bag", default_value="", description="bag to play with --clock (empty: play it)"),
        DeclareLaunchArgument("calibration_file",
                              default_value=PathJoinSubstitution([share, "config", "calibration", "nuscenes.yaml"]),
                              description="calibration YAML"),
        DeclareLaunchArgument("params_file", description="node parameter YAML",
                              default_value=PathJoinSubstitution([share, "config", "bdc_occ.param.yaml"])),
        *(DeclareLaunchArgument(name, default_value="", description=f"override parameter '{name}' (empty: keep)")
          for name in ("model_config", "checkpoint", "engine", "device")),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_setup),
    ])

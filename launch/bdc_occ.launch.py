"""Start bdc_occ_node (node name ``bdc_occ``) and, with ``rviz:=true``, RViz with config/bdc_occ.rviz.

    ros2 launch bdc_occ_ros bdc_occ.launch.py \\
        calibration_file:=$(ros2 pkg prefix bdc_occ_ros)/share/bdc_occ_ros/config/calibration/nuscenes.yaml

Arguments (string overrides left empty keep the value of ``params_file``):
  params_file       parameter YAML (default: the package's config/bdc_occ.param.yaml)
  calibration_file  calibration YAML (required where tf2_ros is missing, e.g. ROS 2 from PyPI wheels)
  model_config, checkpoint, engine, device, transport, image_topic, camera_info_topic, use_camera_info
  use_sim_time      true when replaying a bag with --clock (default false)
  namespace         namespace of the node (default: none -> /bdc_occ/...)
  rviz              also start RViz (default false)

Fast DDS gets the package's shared-memory profile (config/fastdds_shm.xml): without it six camera
streams see 100-800 ms latency over the default transport. The node is not respawned: a start-up
error (bad parameter, missing checkpoint) ends it once with a clear message.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "bdc_occ_ros"
#: Node parameters a launch argument of the same name overrides when it is not empty.
STRING_OVERRIDES = ("calibration_file", "model_config", "checkpoint", "engine", "device", "transport",
                    "image_topic", "camera_info_topic")
BOOL_OVERRIDES = ("use_camera_info",)


def _node(context):
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = {name: LaunchConfiguration(name).perform(context) for name in STRING_OVERRIDES}
    overrides = {name: value for name, value in overrides.items() if value}
    for name in BOOL_OVERRIDES:
        value = LaunchConfiguration(name).perform(context).lower()
        if value:
            overrides[name] = value in ("true", "1")
    overrides["use_sim_time"] = LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")
    return [
        Node(
            package=PACKAGE,
            executable="bdc_occ_node",
            name="bdc_occ",
            namespace=LaunchConfiguration("namespace"),
            parameters=[params_file, overrides],
            output="screen",
            respawn=False,
        )
    ]


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    profile = PathJoinSubstitution([share, "config", "fastdds_shm.xml"])
    arguments = [
        DeclareLaunchArgument("params_file", description="node parameter YAML",
                              default_value=PathJoinSubstitution([share, "config", "bdc_occ.param.yaml"])),
        *(DeclareLaunchArgument(name, default_value="", description=f"override parameter '{name}' (empty: keep)")
          for name in STRING_OVERRIDES + BOOL_OVERRIDES),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/bdc_occ.rviz"),
    ]
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_node),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", PathJoinSubstitution([share, "config", "bdc_occ.rviz"])],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            condition=IfCondition(LaunchConfiguration("rviz")),
            output="screen",
        ),
    ])

"""rosbag2 files without ROS: writing and reading bags with ``rosbags``, the nuScenes camera bag layout,
SynthOcc and nuScenes converters, and the offline replay of the node's pipeline over a bag."""

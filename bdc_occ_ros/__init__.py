"""bdc_occ_ros: camera-only semantic occupancy with a binarized network (BDC-Occ).

The generated interface code (``bdc_occ_ros.msg``) and these hand-written modules may live in
different directories named ``bdc_occ_ros``: one directory in a colcon install space, two in the
developer venv (site-packages holds the generated code, the repository the editable source).
``extend_path`` merges every ``bdc_occ_ros`` directory on sys.path. Keep this file import-free:
in the developer venv a *copy* of it is what runs.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"

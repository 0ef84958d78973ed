"""The case browser: volume, score maps and true anomaly of every case, in a page that opens from a folder.

Rendering: the page is a small script of the project's own (``assets/viewer.js``, plain JavaScript and a
2-D canvas) that slices uint8 voxel arrays itself, rather than pre-rendered slice pictures (a picture
per slice, plane, method and threshold would be thousands of files and could not move the threshold)
or a viewer library (the well-kept ones, e.g. NiiVue, are npm packages: they would have to be bundled
into every report, and they need WebGL, which headless and remote machines often lack). Data files
are ``<script src>`` files, so ``file://`` works without a server; see :mod:`.write` for the layout and
:mod:`.encode` for how the size is bounded.

Public API: :func:`find_cases`, :func:`choose_cases`, :class:`Method`, :func:`parse_method`,
:func:`find_manifest`, :func:`check_predictions` (which cases and files), :func:`write_viewer` / :func:`write_viewer_files`
(the folder), :func:`report_section` (the demo report's link), :func:`serve_folder` (``--serve``).
"""

from .cases import CaseFiles, Method, check_predictions, choose_cases, find_cases, find_manifest, parse_method
from .encode import DEFAULT_MAX_SIZE
from .serve import serve_folder
from .write import ViewerSummary, report_section, write_viewer, write_viewer_files

__all__ = ["CaseFiles", "Method", "check_predictions", "choose_cases", "find_cases", "find_manifest", "parse_method",
           "DEFAULT_MAX_SIZE", "serve_folder", "ViewerSummary", "report_section", "write_viewer", "write_viewer_files"]

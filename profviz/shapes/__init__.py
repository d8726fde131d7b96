"""The JSON the server's API (docs/api.md) and the CLI's ``--json`` print: one function per shape,
from model-level results of :mod:`profviz.analysis` and the store's rows. Nothing below this
package builds a response's dicts, and nothing above it reshapes them."""

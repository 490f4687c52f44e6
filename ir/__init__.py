"""snnc IR: NIR graphs with the ``snnc.`` metadata convention, networkx ordering, validation, shapes, files."""
from . import conventions
from .errors import (
                     BackendError,
                     ClusterError,
                     DataError,
                     GraphError,
                     InternalError,
                     NIRFileError,
                     OverflowEventError,
                     QuantizationError,
                     RecurrentTimingError,
                     SnncError,
                     UnsupportedLayerError,
                     UsageError,
)
from .graph import (
                     Graph,
                     back_edges,
                     copy_graph,
                     infer_shapes,
                     input_name,
                     output_name,
                     predecessors,
                     read,
                     successors,
                     to_networkx,
                     topo_order,
                     validate,
                     write,
)
from .nir_compat import make_graph
from .nirfile import graphs_equal

__all__ = ["conventions", "Graph", "read", "write", "validate", "infer_shapes", "topo_order", "to_networkx",
           "predecessors", "successors", "input_name", "output_name", "copy_graph", "graphs_equal", "make_graph",
           "SnncError", "UnsupportedLayerError", "GraphError", "NIRFileError", "QuantizationError",
           "BackendError", "DataError", "OverflowEventError", "ClusterError", "UsageError", "InternalError",
           "RecurrentTimingError", "back_edges"]

"""CuPy's kernel parameter type names as C types: shared by the tests that build kernels."""

C_TYPES = {
    "int64": "long long",
    "int32": "int",
    "uint16": "unsigned short",
    "float32": "float",
    "float64": "double",
}

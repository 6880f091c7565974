"""The one exception prefkit raises for bad input."""


class PrefkitError(ValueError):
    """Bad input or arguments to a prefkit operation.

    Messages name the column, the expected and the actual type or value, and a row index where
    one applies. It subclasses ``ValueError`` so that existing ``except ValueError`` code keeps
    working.

    Examples
    --------
    >>> import prefkit as pk
    >>> import pyarrow as pa
    >>> try:
    ...     pk.mine_pairs(pa.table({"prompt": ["p"], "response": ["r"]}))
    ... except pk.PrefkitError as err:
    ...     print(err)
    column 'score' not found; the table has columns ['prompt', 'response']
    """

"""The model families, one module each; `minibert.families` names them (and imports no TensorFlow).
TensorFlow is first imported here (every model class comes through this package), quietly: see
`minibert._tensorflow`."""
from .._tensorflow import load_tensorflow_quietly

load_tensorflow_quietly()

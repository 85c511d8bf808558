"""The model families. TensorFlow is first imported here (every model class comes through this
package), quietly: see `minibert._tensorflow`."""
from .._tensorflow import load_tensorflow_quietly

load_tensorflow_quietly()

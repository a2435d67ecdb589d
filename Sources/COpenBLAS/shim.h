// OpenBLAS's CBLAS interface (Debian package libopenblas-dev).
#include <x86_64-linux-gnu/cblas.h>

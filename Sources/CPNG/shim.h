// libpng simplified API (Debian package libpng-dev).
#include <png.h>

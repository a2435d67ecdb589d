// libjpeg-turbo TurboJPEG API (Debian package libturbojpeg0-dev).
#include <turbojpeg.h>

// Open MPI's C API (Debian package libopenmpi-dev). Its handles (MPI_COMM_WORLD, MPI_FLOAT, ...)
// are macros over addresses of library globals, which Swift cannot import: these functions
// return them.
#include <mpi.h>

static inline MPI_Comm maxq_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype maxq_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype maxq_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Op maxq_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Errhandler maxq_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request maxq_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline void *maxq_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *maxq_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Info maxq_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Comm maxq_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline int maxq_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

#pragma once
// The one way histoscan reads CSV: fast-cpp-csv-parser (Debian's libfccp) with a header row,
// fields trimmed of blanks and CR (CRLF files), double-quoted fields, no reader thread.
// A UTF-8 byte-order mark is skipped by the library itself.
#define CSV_IO_NO_THREAD
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-truncation"
#include <libfccp/csv.h>
#pragma GCC diagnostic pop

namespace histoscan {

template <unsigned columns>
using CsvReader = io::CSVReader<columns, io::trim_chars<' ', '\t', '\r'>, io::double_quote_escape<',', '"'>>;

}  // namespace histoscan

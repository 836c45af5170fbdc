#pragma once
// The one way histoscan reads CSV: fast-cpp-csv-parser (Debian's libfccp) with a header row,
// fields trimmed of blanks and CR (CRLF files), double-quoted fields, no reader thread.
// A UTF-8 byte-order mark is skipped by the library itself. And the field quoting its writers use.
#define CSV_IO_NO_THREAD
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-truncation"
#include <libfccp/csv.h>
#pragma GCC diagnostic pop

#include <string>

namespace histoscan {

// A field as written to CSV: as is, or double-quoted (quotes doubled) when it holds a comma,
// a quote or a line break.
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

template <unsigned columns>
using CsvReader = io::CSVReader<columns, io::trim_chars<' ', '\t', '\r'>, io::double_quote_escape<',', '"'>>;

}  // namespace histoscan

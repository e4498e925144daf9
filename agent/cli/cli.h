// Command-line front end: parses arguments and runs one command. Errors name the bad
// argument and print the usage line of the command.
#pragma once

namespace kw::cli {

int main(int argc, char** argv);

}  // namespace kw::cli

// kwarden: wiring only. See cli/cli.cpp for the commands.
#include "cli/cli.h"

int main(int argc, char** argv) { return kw::cli::main(argc, argv); }

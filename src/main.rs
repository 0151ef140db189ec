fn main() {
    std::process::exit(tether::cli::main());
}

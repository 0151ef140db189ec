fn main() {
    std::process::exit(tether::cli_main());
}

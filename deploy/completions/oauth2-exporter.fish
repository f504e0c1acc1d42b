# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_oauth2_exporter_global_optspecs
    string join \n config.file= web.listen-address= web.telemetry-path= web.config.file= log.level= log.format= config.check demo shard= total-shards= shard-from-pod-name= V/version h/help
end

function __fish_oauth2_exporter_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_oauth2_exporter_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_oauth2_exporter_using_subcommand
    set -l cmd (__fish_oauth2_exporter_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l config.file -d 'Configuration file (TOML), or a directory of *.toml files merged in name order. May be given several times; a provider defined in two files is an error' -r -F
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l web.listen-address -d 'Address to serve the web endpoints on, HOST:PORT or :PORT for every interface (overrides web.listen_address). May be given several times to listen on several addresses' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l web.telemetry-path -d 'Path under which the metrics are served' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l web.config.file -d 'TLS and basic auth for the web endpoints, in the Prometheus exporter-toolkit format' -r -F
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l log.level -d 'Log level of the exporter\'s own messages' -r -f -a "error\t''
warn\t''
info\t''
debug\t''
trace\t''"
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l log.format -d 'Log format' -r -f -a "logfmt\t''
json\t''"
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l shard -d 'Probe only the providers of shard N (0-based) of --total-shards; every shard loads the same configuration' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l total-shards -d 'How many shards the fleet is split over (with --shard or --shard-from-pod-name)' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l shard-from-pod-name -d 'Take --shard from a StatefulSet pod name\'s ordinal suffix (oauth2-exporter-2 is shard 2), e.g. --shard-from-pod-name=$(POD_NAME)' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l config.check -d 'Validate the configuration (secrets resolved), print every problem, and exit'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -l demo -d 'Run against a built-in identity provider and API on loopback, with a built-in configuration: the quickest way to see every metric'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -s V -l version -d 'Print the version, git revision, build date and rustc version, and exit'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -s h -l help -d 'Print help'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -f -a "check" -d 'Run each provider\'s token flow and canary once, print the results, and exit: 0 when all pass, 1 when any fails, 2 on a configuration error'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l provider -d 'Check only this provider (may be given several times)' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l label -d 'Check only the providers with this label (its `labels` or the defaults\'); may be given several times, and a provider must have them all. With --provider, only the named providers that have them' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l output -d 'Output format' -r -f -a "table\t''
json\t''"
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l warn-within -d 'Also exit 1 when a credential or certificate expires within this window (e.g. 30d), even if every probe passed: for a weekly CI job that nags before the break' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l config.file -d 'Configuration file (TOML), or a directory of *.toml files merged in name order. May be given several times; a provider defined in two files is an error' -r -F
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l log.level -d 'Log level of the exporter\'s own messages' -r -f -a "error\t''
warn\t''
info\t''
debug\t''
trace\t''"
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l log.format -d 'Log format' -r -f -a "logfmt\t''
json\t''"
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l shard -d 'Probe only the providers of shard N (0-based) of --total-shards; every shard loads the same configuration' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l total-shards -d 'How many shards the fleet is split over (with --shard or --shard-from-pod-name)' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -l shard-from-pod-name -d 'Take --shard from a StatefulSet pod name\'s ordinal suffix (oauth2-exporter-2 is shard 2), e.g. --shard-from-pod-name=$(POD_NAME)' -r
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand check" -s h -l help -d 'Print help'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand help; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Run each provider\'s token flow and canary once, print the results, and exit: 0 when all pass, 1 when any fails, 2 on a configuration error'
complete -c oauth2-exporter -n "__fish_oauth2_exporter_using_subcommand help; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

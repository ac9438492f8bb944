// cli.h: the `mavref` command line. One table of options (ref/cli_options.c) serves every
// command: each row names the option, the kind of its argument, the commands that take it,
// where its value goes in CliArgs, its default and its help line. A command parses argv
// against the table, then runs with the filled CliArgs (ref/cli.c).
//
// Adding an option: a field in CliArgs below and one row in cli_options[].
// Adding a command: a CMD_ bit below, a run function and one row in the command table (cli.c).
#ifndef MAVREF_CLI_H
#define MAVREF_CLI_H

#include <stddef.h>
#include <stdio.h>

// The commands, as bits: an option row lists the commands that take it.
enum {
    CMD_INFO = 1 << 0,
    CMD_COMPARE = 1 << 1,
    CMD_TRAIN = 1 << 2,
    CMD_UNET = 1 << 3,
    CMD_TOKENIZE = 1 << 4,
    CMD_ENCODE_TEXT = 1 << 5,
    CMD_GENERATE = 1 << 6,
    CMD_TOYWORLD = 1 << 7,
    CMD_TRAIN_VAE = 1 << 8,
    CMD_CONVERT = 1 << 9,
    CMD_CHECK = 1 << 10,
    CMD_INIT = 1 << 11,
    CMD_ENCODE_CLIPS = 1 << 12,
    CMD_TOY_EVAL = 1 << 13
};

typedef enum {
    OPT_FLAG,   // no argument: sets an int to 1
    OPT_TEXT,   // a string (a path, a prompt, a list), taken as it is, even if it begins with '-'
    OPT_COUNT,  // a non-negative integer in [lo, hi] (unsigned long long)
    OPT_NUMBER, // a number (double)
    OPT_NONNEG  // a number >= 0 (double)
} OptKind;

typedef struct {
    const char *name;          // "--steps"
    unsigned commands;         // CMD_ bits of the commands that take it
    OptKind kind;
    size_t field;              // offsetof(CliArgs, destination)
    const char *arg;           // the argument's name in the usage ("N"); NULL for a flag
    const char *def;           // the default as it would be typed; NULL: none (or the model's own)
    unsigned long long lo, hi; // OPT_COUNT: the accepted range
    const char *help;
} CliOption;

#define CLI_MAX_OPTIONS 128
#define CLI_MAX_POSITIONAL 2

// Every option's value; a command reads the fields its options fill.
typedef struct {
    FILE *out, *err; // where the command prints (stdout and stderr; a test passes its own files)
    const char *command;
    unsigned bit;                         // the command's CMD_ bit
    const char *pos[CLI_MAX_POSITIONAL];  // positional arguments (FILE, A B, TEXT, PROMPT)
    int npos;
    unsigned char given[CLI_MAX_OPTIONS]; // by row of cli_options[]: the option was on the line
    // files and names
    const char *out_path, *merges, *weights, *config, *inputs, *data, *resume, *plot;
    const char *prompt, *negative, *scheduler, *hint, *mask, *noise, *replay;
    const char *unet, *vae, *clip, *unet_config, *hint_unet, *hint_unet_config, *vae_channels, *scheduler_config;
    const char *model, *hint_model; // published folders (ref/model_dir.h)
    const char *preview;            // generate: PREFIX of the clip predicted at every step
    const char *backend, *vectors, *ops, *cases, *level, *workdir; // check
    const char *dtype;              // init, convert
    const char *first_frame;        // toyworld
    const char *train_only;         // train-vae
    const char *from_2d;            // init unet
    const char *whiten;             // init vae
    const char *component, *names;  // convert
    // integers
    unsigned long long procedural, steps, frames, batch, total_steps, seed, clips, size, width, height, fps;
    unsigned long long unet_seed, vae_seed, clip_seed, hint_unet_seed;
    unsigned long long vae_layers, clip_width, clip_layers, clip_heads, clip_mlp;
    unsigned long long precision; // check
    unsigned long long gif_scale;  // generate
    double timeout;               // check
    // numbers
    double rtol, atol, lr, warmup, decay, weight_decay, guidance, guidance_image, kl, cond_drop;
    // flags
    int taps, two_d, all, recompute, ppm_frames, quiet, held_out, truth, true_first_frame;
} CliArgs;

extern const CliOption cli_options[];
extern const size_t n_cli_options;

typedef struct {
    const char *name;       // "generate"
    unsigned bit;           // CMD_GENERATE
    int min_pos, max_pos;   // how many positional arguments it takes
    const char *positional; // their names ("A B"), or ""
    const char *synopsis;   // after "mavref NAME": the arguments that matter
    const char *about;      // what it does, lines of text indented by 6
} CliCommand;

// Fill `a` for command `c` from argv (the arguments after the command's name): the defaults
// first, then the options and positional arguments in any order; `--` ends the options, so
// that a TEXT beginning with '-' can follow it. Returns 0 to run, 1 after printing the
// usage for --help / -h (exit 0), 2 after printing a one-line error naming the argument.
int cli_parse(CliArgs *a, const CliCommand *c, int argc, char **argv);
// 1 if the option `name` of a's command was on the command line.
int cli_given(const CliArgs *a, const char *name);
// The usage of one command: synopsis, what it does, and its options from the table.
void cli_usage(FILE *fp, const CliCommand *c);

// The whole `mavref` command: argv[0] is the program, argv[1] the command. Usage, option
// errors and every command's output go to `out` and `err`. Returns the exit status:
// 0 success, 1 a failure while running (or a mismatch for compare), 2 bad usage or input.
int mavref_main(int argc, char **argv, FILE *out, FILE *err);
// The i-th command (for tests), NULL past the last.
const CliCommand *mavref_command(size_t i);

#endif

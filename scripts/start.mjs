// `npm start`: builds quietly (the build log is shown only if the build fails), then runs the main job.
import { spawnSync } from 'node:child_process';

const build = spawnSync('npm', ['run', 'build', '--silent'], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
if (build.status !== 0) {
  process.stderr.write(build.stdout + build.stderr);
  process.exit(build.status ?? 1);
}
const run = spawnSync(process.execPath, ['dist/cli.js', 'demo', ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(run.status ?? 1);
